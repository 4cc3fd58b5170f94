"""Count live tensor bytes on any device, the way CUDA's `max_memory_allocated` counts them.

A dispatch mode sees every tensor an operator creates; each distinct storage is counted once,
rounded up to the caching allocator's 512-byte blocks, and uncounted when Python's weak reference
to it dies. Tensors created before the mode (weights) are added with `track`. Unlike torch's
MemTracker this needs no module hooks, so frozen parameters (LoRA, QLoRA) are fine.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

BLOCK = 512  # c10/cuda/CUDACachingAllocator.cpp kMinBlockSize


def _blocks(nbytes: int) -> int:
    """Bytes the caching allocator hands out for a request: whole 512-byte blocks."""
    return -(-nbytes // BLOCK) * BLOCK


class LiveTensorBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self._refs: dict[int, weakref.ref] = {}
        self.current = 0
        self.peak = 0

    def track(self, tensors) -> None:
        """Count tensors that already exist (parameters, buffers, optimizer state)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t)

    def reset_peak(self) -> None:
        self.peak = self.current

    @staticmethod
    def _storage(t: torch.Tensor):
        """The tensor's storage, or None for meta tensors and subclasses without a plain storage."""
        if t.is_meta or not hasattr(t, "untyped_storage"):
            return None
        try:
            return t.untyped_storage()
        except (NotImplementedError, RuntimeError):
            return None

    def _known(self, storage) -> bool:
        ref = self._refs.get(id(storage))
        return ref is not None and ref() is storage

    def _add(self, t: torch.Tensor) -> None:
        storage = self._storage(t)
        if storage is None or self._known(storage):
            return
        key = id(storage)
        size = _blocks(storage.nbytes())

        def freed(_, key=key, size=size):
            if self._refs.get(key) is not None and self._refs[key]() is None:
                del self._refs[key]
            self.current -= size

        self._refs[key] = weakref.ref(storage, freed)
        self.current += size
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out


class LiveStorageBytes(LiveTensorBytes):
    """Like LiveTensorBytes, with every live storage counted at its current size.

    FSDP frees a gathered parameter by resizing its storage to zero and gathers it again into the same
    storage, so a size fixed at creation would miss both. Re-summing the live storages around every
    operator is slower (linear in the number of live storages), which small models can afford."""

    def _add(self, t: torch.Tensor) -> None:
        storage = self._storage(t)
        if storage is None:
            return
        if not self._known(storage):
            key = id(storage)
            self._refs[key] = weakref.ref(storage, lambda _, key=key: self._refs.pop(key, None))
        self._recount()

    def _recount(self) -> None:
        live = (ref() for ref in list(self._refs.values()))
        self.current = sum(_blocks(s.nbytes()) for s in live if s is not None)
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._recount()  # a resize since the last operator (FSDP's gather or free)
        return super().__torch_dispatch__(func, types, args, kwargs)

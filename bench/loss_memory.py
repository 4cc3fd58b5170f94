"""Peak live-tensor memory of the loss at a 128k vocabulary: transformers' causal-LM loss against ftc's
chunked linear cross-entropy, measured with torch's MemTracker on CPU, next to the estimator's figure.

One training forward + backward of the loss alone: last hidden states (tokens × hidden, requires grad)
through the output head (vocab × hidden, frozen as under LoRA, or trained as in full fine-tuning) to the
loss. The peak counts the tensors the step allocates (the inputs and the head's weight exist before it).

    python bench/loss_memory.py [--tokens 1024] [--hidden 512] [--vocab 128256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

MiB = 2**20


def measure(kind: str, tokens: int, hidden: int, vocab: int, train_head: bool) -> tuple[int, float]:
    import torch
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers.loss.loss_utils import ForCausalLMLoss

    from ftc.runtime.train.loss import chunked_cross_entropy

    torch.manual_seed(0)
    h = torch.randn(1, tokens, hidden, requires_grad=True)
    weight = (torch.randn(vocab, hidden) * hidden ** -0.5).requires_grad_(train_head)
    labels = torch.randint(0, vocab, (1, tokens))
    tracker = MemTracker()
    start = time.perf_counter()
    with tracker:
        if kind == "plain":
            loss = ForCausalLMLoss(torch.nn.functional.linear(h, weight), labels, vocab_size=vocab)
        else:
            loss = chunked_cross_entropy(h, weight, labels)
        loss.backward()
    seconds = time.perf_counter() - start
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"], seconds


def estimated(tokens: int, hidden: int, vocab: int, train_head: bool) -> tuple[int, int]:
    """The estimator's logits_loss term, plain and chunked, for the same shapes in fp32."""
    from ftc.compiler.memory.activations import loss_bytes_per_logit
    from ftc.compiler.memory.estimate import linear_cross_entropy_bytes
    from ftc.compiler.memory.setup import MemorySetup
    from ftc.compiler.models.resolve import resolve_model

    arch = resolve_model("meta-llama/Llama-3.2-1B").architecture
    from dataclasses import replace

    arch = replace(arch, vocab=vocab, hidden=hidden)
    setup = MemorySetup(arch=arch, method="full" if train_head else "lora", dtype="fp32", mixed_precision="no",
                        device="cpu")
    chunked, _ = linear_cross_entropy_bytes(setup, tokens, 4)
    return tokens * vocab * loss_bytes_per_logit(4), chunked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    for train_head in (False, True):
        est_plain, est_chunked = estimated(args.tokens, args.hidden, args.vocab, train_head)
        weights = 0
        runs = {k: [measure(k, args.tokens, args.hidden, args.vocab, train_head) for _ in range(args.repeats)]
                for k in ("plain", "chunked")}
        peak = {k: statistics.median(p for p, _ in v) for k, v in runs.items()}
        secs = {k: statistics.median(s for _, s in v) for k, v in runs.items()}
        rows.append((train_head, peak, secs, weights, est_plain, est_chunked, runs))
    print(f"Workload: one loss forward + backward, {args.tokens:,} tokens × hidden {args.hidden} → vocabulary "
          f"{args.vocab:,}, fp32, CPU, torch's MemTracker (live tensors); median of {args.repeats} runs; baseline: "
          f"transformers' `ForCausalLMLoss` on the head's logits. The peak counts what the step allocates (the head's "
          f"weight and the hidden states exist before it).\n")
    print("| head | plain loss peak | chunked peak | plain / chunked | estimator: plain logits_loss | estimator: "
          "chunked logits_loss | time plain / chunked | raw peaks plain, MiB | raw peaks chunked, MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for train_head, peak, secs, weights, est_plain, est_chunked, runs in rows:
        raw = {k: " / ".join(f"{p / MiB:,.0f}" for p, _ in v) for k, v in runs.items()}
        print(f"| {'trained (full)' if train_head else 'frozen (LoRA)'} | {peak['plain'] / MiB:,.0f} MiB "
              f"| {peak['chunked'] / MiB:,.0f} MiB | {peak['plain'] / peak['chunked']:.1f}× "
              f"| {est_plain / MiB:,.0f} MiB | {est_chunked / MiB:,.0f} MiB "
              f"| {secs['plain']:.2f} s / {secs['chunked']:.2f} s | {raw['plain']} | {raw['chunked']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

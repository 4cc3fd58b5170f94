"""The one build path: compile a recipe, emit the compiled folder's files, then write them or compare them
with a folder. `ftc compile`, `ftc run`, `ftc diff`, `ftc data` and every sweep trial go through `build`, so
each sees the same plan and the same bytes."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Build:
    """A compile and, when it succeeded (and files were asked for), the bytes of every generated file."""

    compiled: object  # ftc.compiler.pipeline.Compiled
    files: Mapping[str, bytes] | None

    @property
    def ok(self) -> bool:
        return self.compiled.plan is not None

    @property
    def plan(self) -> dict | None:
        return self.compiled.plan

    @property
    def out_dir(self) -> Path:
        return self.compiled.out_dir

    @property
    def diagnostics(self):
        return self.compiled.diagnostics

    @property
    def errors(self) -> tuple:
        return tuple(d for d in self.compiled.diagnostics if d.is_error)

    @property
    def registry(self):
        return self.compiled.registry

    @property
    def recipe(self):
        return self.compiled.recipe


def build(recipe: str | os.PathLike, overrides: tuple[str, ...] = (), *, out_dir: str | os.PathLike | None = None,
          files: bool = True) -> Build:
    """Compile `recipe` with `overrides` for `out_dir` (default `build/<name>/`); emit its files unless
    `files` is False (a caller that needs only the plan does not render templates)."""
    from ftc.compiler.pipeline import compile_recipe

    compiled = compile_recipe(recipe, tuple(overrides), out_dir=out_dir)
    if compiled.plan is None or not files:
        return Build(compiled, None)
    from ftc.compiler.emit import emit

    return Build(compiled, emit(compiled.plan))


def write_folder(out_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write every file atomically; remove generated files this compile no longer produces."""
    from ftc.compiler.emit import ARTIFACTS, EXECUTABLE

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o755 if name in EXECUTABLE else 0o644)
        os.replace(tmp, path)
    for name in ARTIFACTS:
        if name not in files and (out_dir / name).is_file():
            (out_dir / name).unlink()


def stale_diff(out_dir: Path, files: Mapping[str, bytes]) -> str:
    """A unified diff from what is in `out_dir` to what would be written; empty when up to date."""
    from ftc.compiler.emit import ARTIFACTS

    chunks: list[str] = []
    for name in ARTIFACTS:
        path = out_dir / name
        old = path.read_bytes() if path.is_file() else None
        new = files.get(name)
        if old == new:
            continue
        old_lines, new_lines = _lines(old), _lines(new)
        chunks.extend(difflib.unified_diff(old_lines, new_lines,
                                           fromfile=f"a/{name}" if old is not None else "/dev/null",
                                           tofile=f"b/{name}" if new is not None else "/dev/null"))
        if old is not None and new is not None and old_lines == new_lines:
            chunks.append(f"Binary or line-ending difference in {name}\n")
        if chunks and not chunks[-1].endswith("\n"):
            chunks[-1] += "\n"
    return "".join(chunks)


def read_folder(folder: Path) -> dict[str, bytes]:
    """The generated files present in a compiled folder, by name (OSError when one cannot be read)."""
    from ftc.compiler.emit import ARTIFACTS

    return {name: (folder / name).read_bytes() for name in ARTIFACTS if (folder / name).is_file()}


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)

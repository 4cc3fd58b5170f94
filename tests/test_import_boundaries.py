"""The layers import one way (docs/architecture.md): the plan contract imports no other layer, the compiler
and the runtime meet only at the plan, and neither reaches up into the commands. Read from the AST of every
module, so an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# folder in the repository -> its package name once installed
PACKAGES = {"plan": "ftc.plan", "compiler": "ftc.compiler", "runtime": "ftc.runtime", "ftc": "ftc"}
FORBIDDEN = {
    "plan": ("ftc.compiler", "ftc.runtime", "ftc.commands", "ftc.cli", "ftc.orchestrate"),
    "compiler": ("ftc.runtime", "ftc.commands", "ftc.cli", "ftc.orchestrate"),
    "runtime": ("ftc.compiler", "ftc.commands", "ftc.cli", "ftc.orchestrate"),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]].split(".")[-1] if rel.parts[0] != "ftc" else None, *rel.parts[1:]]
    name = ".".join(["ftc", *[p for p in parts if p]])
    return name.removesuffix(".__init__")


def imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against its package)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(layer: str) -> dict[str, list[str]]:
    out = {}
    for path in sorted((REPO / layer).rglob("*.py")):
        bad = sorted(n for n in imports(path) if n.startswith(FORBIDDEN[layer]))
        if bad:
            out[path.relative_to(REPO).as_posix()] = bad
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_one_way(layer):
    found = violations(layer)
    assert found == {}, f"{layer}/ imports a layer it must not (see docs/architecture.md): {found}"


def test_the_check_sees_relative_and_nested_imports():
    """The reader itself: a relative import that climbs out of the runtime, inside a function, is caught."""
    source = "def f():\n    from ...compiler import pipeline\n    import ftc.commands.run\n"
    names = imports(REPO / "runtime" / "train" / "probe.py", source)
    assert "ftc.compiler.pipeline" in names and "ftc.commands.run" in names

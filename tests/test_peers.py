"""Recipes of other tools ported to `.ftspec` (tests/peers/): each checks and compiles, each spelling its table
names is in its recipe, at least 95% of the originals' settings are expressible, and every gap is listed in
docs/peers.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "tests" / "peers"
RECIPES = sorted(PEERS.glob("*.ftspec"))
GAPS_DOC = REPO / "docs" / "peers.md"
ORIGINALS = 8


def table(recipe: Path) -> list[tuple[str, str]]:
    """(original setting, ftc cell) rows of the recipe's table."""
    rows = []
    for line in recipe.with_suffix(".md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1]))
    return rows


def is_gap(cell: str) -> bool:
    return cell.startswith("gap:")


def test_every_original_is_ported():
    assert len(RECIPES) == ORIGINALS and all(r.with_suffix(".md").is_file() for r in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_port_checks_and_compiles(recipe, tmp_path):
    compiled = compile_recipe(recipe, out_dir=tmp_path / "out")
    assert compiled.plan is not None, [f"{d.code} {d.message}" for d in compiled.diagnostics if d.is_error]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_spelling_of_the_table_is_in_the_recipe(recipe):
    text = " ".join(recipe.read_text(encoding="utf-8").split())
    rows = table(recipe)
    assert len(rows) >= 20, recipe.name
    for original, cell in rows:
        if is_gap(cell) or cell.startswith("default:"):
            continue
        spellings = re.findall(r"`([^`]+)`", cell.split(" (")[0])
        assert spellings, (original, cell)
        for spelling in spellings:
            assert " ".join(spelling.split()) in text, f"{recipe.name}: `{spelling}` ({original})"


def test_at_least_95_percent_of_the_settings_are_expressible():
    rows = [row for recipe in RECIPES for row in table(recipe)]
    gaps = [row for row in rows if is_gap(row[1])]
    share = 1 - len(gaps) / len(rows)
    print(f"\n{len(rows)} settings in {len(RECIPES)} originals, {len(gaps)} gaps: {share:.1%} expressible")
    assert share >= 0.95, [g[0] for g in gaps]


def test_every_gap_is_listed_in_the_docs():
    doc = GAPS_DOC.read_text(encoding="utf-8")
    for recipe in RECIPES:
        for original, cell in table(recipe):
            if is_gap(cell):
                key = original.split(":")[0]
                assert f"`{key}`" in doc, f"docs/peers.md does not list the gap `{key}` ({recipe.stem})"

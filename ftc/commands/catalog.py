"""`ftc catalog [models|gpus] [--json]`: what resolves without a download or a `memory_per_gpu`.

The model ids `model "..."` finds in the built-in catalog (a local folder or the Hugging Face cache is
read first), with their family and exact parameter count, and the GPU names `hardware.gpu` takes, with the
memory that becomes the budget.
"""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("part", nargs="?", choices=("models", "gpus"), help="only the models or only the GPUs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def model_rows() -> list[dict]:
    """One row per catalog entry: its ids (the first is the one it was checked against) and its sizes."""
    from ftc.compiler.models.arch import from_config
    from ftc.compiler.models.params import count
    from ftc.compiler.models.resolve import catalog_entries

    rows = []
    for entry in catalog_entries():
        arch = from_config(entry["config"])
        rows.append({"ids": entry["ids"], "model_type": arch.model_type, "params": count(arch, "full").total,
                     "layers": arch.layers, "hidden": arch.hidden, "max_positions": arch.max_positions})
    return rows


def gpu_rows() -> list[dict]:
    from ftc.compiler.memory import hardware

    aliases: dict[str, list[str]] = {}
    for alias, name in hardware.ALIASES.items():
        if name is not None:
            aliases.setdefault(name, []).append(alias)
    return [{"name": name, "memory_bytes": mib * hardware.MiB, "device": device, "aliases": aliases.get(name, [])}
            for name, (mib, device) in hardware.GPUS.items()]


def run(args) -> int:
    from ftc.commands.common import dump_json

    from ftc.compiler.models.arch import SUPPORTED_TYPES

    parts = (args.part,) if args.part else ("models", "gpus")
    rows = {part: model_rows() if part == "models" else gpu_rows() for part in parts}
    if args.json:
        dump_json(dict(rows, model_types=list(SUPPORTED_TYPES)) if "models" in rows else rows)
        return 0
    render(rows)
    if "models" in rows:  # the families a local folder or the Hugging Face cache can hold, catalog or not
        print(f"model_type read from a config.json (local folder or cache): {', '.join(SUPPORTED_TYPES)}")
    return 0


def render(rows: dict[str, list[dict]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ftc.compiler.memory.units import gib, param_count

    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    if "models" in rows:
        table = Table(title="models (`model \"ID\"`; case-insensitive)", title_justify="left", box=box.SIMPLE_HEAD)
        for column, justify in (("ids", "left"), ("family", "left"), ("params", "right"), ("layers", "right"),
                                ("hidden", "right"), ("context", "right")):
            table.add_column(column, justify=justify, overflow="fold")
        for r in rows["models"]:
            table.add_row("\n".join(r["ids"]), r["model_type"], param_count(r["params"]), str(r["layers"]),
                          str(r["hidden"]), str(r["max_positions"] or "-"))
        console.print(table, markup=False)
    if "gpus" in rows:
        table = Table(title="GPUs (`hardware { gpu = NAME }`; anything else: `memory_per_gpu`)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        for column, justify in (("name", "left"), ("memory", "right"), ("device", "left"), ("also", "left")):
            table.add_column(column, justify=justify, overflow="fold")
        for r in rows["gpus"]:
            table.add_row(r["name"], gib(r["memory_bytes"]), r["device"], ", ".join(r["aliases"]))
        console.print(table, markup=False)

"""Emit: the compiled folder's files from a plan — deterministic bytes, nothing else.

`emit(plan)` returns `{file name: bytes}` in the order of `ARTIFACTS`, `ftc.lock` last (it hashes the others).
Which files exist depends on the plan: `ds_config.json` only for DeepSpeed, `hostfile` only for DeepSpeed on
more than one node; `plan.json`, `accelerate.yaml`, `launch.sh`, `slurm.sbatch` and `ftc.lock` always.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from pathlib import Path

from .accelerate import accelerate_config
from .canonical import dumps_json, dumps_yaml, header_line, safe_comment
from .deepspeed import ds_config
from .lock import lock_file

ARTIFACTS = ("plan.json", "ds_config.json", "accelerate.yaml", "launch.sh", "hostfile", "slurm.sbatch", "ftc.lock")
EXECUTABLE = frozenset({"launch.sh", "slurm.sbatch"})

_TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _environment():
    import jinja2  # imported here: `ftc check` never pays for it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["c"] = safe_comment  # a plan string inside a comment line
    return env


def _render(template: str, **context) -> str:
    text = _environment().get_template(template).render(**context)
    return text.replace("\r\n", "\n")


def job_name(name: str) -> str:
    """A name safe as a SLURM job name and file stem: letters, digits, `._-` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.") or "ftc"
    return cleaned[:64]


def emit(plan: dict) -> dict[str, bytes]:
    files: dict[str, str] = {}
    source = plan["recipe"]["source"]
    files["plan.json"] = dumps_json(plan)
    ds = ds_config(plan)
    if ds is not None:
        files["ds_config.json"] = dumps_json(ds)
    files["accelerate.yaml"] = header_line(source) + dumps_yaml(accelerate_config(plan))
    files["launch.sh"] = _launch_sh(plan)
    if plan["launch"]["files"].get("hostfile"):
        files["hostfile"] = _hostfile(plan)
    files["slurm.sbatch"] = _slurm(plan)
    out = {name: text.encode("utf-8") for name, text in files.items()}
    out["ftc.lock"] = lock_file(plan, out).encode("utf-8")
    return {name: out[name] for name in ARTIFACTS if name in out}


def _context(plan: dict) -> dict:
    launch, dist = plan["launch"], plan["distributed"]
    for name in launch["files"].values():
        if name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ValueError(f"bad file name {name!r} in plan.launch.files")
    return {
        "header": header_line(plan["recipe"]["source"]),
        "name": plan["recipe"]["name"],
        "name_comment": safe_comment(repr(plan["recipe"]["name"])),
        "job_name": job_name(plan["recipe"]["name"]),
        "launcher": launch["launcher"],
        "nnodes": int(launch["nnodes"]),
        "nproc": int(launch["nproc_per_node"]),
        "world": int(dist["world_size"]),
        "strategy": dist["strategy"],
        "master_addr": launch["master_addr"],
        "master_port": int(launch["master_port"]),
        "module": launch["entry_module"],
        "files": launch["files"],
        "accelerator": plan["hardware"]["accelerator"],
        "env": sorted(launch["env"].items()),
    }


def _launch_sh(plan: dict) -> str:
    context = _context(plan)
    for key, _ in context["env"]:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ValueError(f"bad environment variable name {key!r} in plan.launch.env")
    return _render("launch.sh.j2", **context)


def _hostfile(plan: dict) -> str:
    launch = plan["launch"]
    hosts = launch.get("hosts") or [f"node-{i}" for i in range(launch["nnodes"])]
    for host in hosts:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            raise ValueError(f"bad host name {host!r} in plan.launch.hosts")
    return _render("hostfile.j2", header=header_line(plan["recipe"]["source"]), hosts=hosts,
                   slots=launch["nproc_per_node"])


def _slurm(plan: dict) -> str:
    return _render("slurm.sbatch.j2", **_context(plan))

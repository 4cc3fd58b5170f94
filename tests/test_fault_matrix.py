"""The fault matrix (docs/reliability.md): every fault kind, in each of three configurations of the real
runtime — one process, and two processes under DDP and under DeepSpeed ZeRO-2 (gloo on CPU). A real
`ftc run` of the tiny model is killed, preempted, starved of disk and fed damaged checkpoints, changed data
and a changed tokenizer, one fault after another in the same run folder (FTC_FAULT, see
runtime/train/faults.py; in two processes each fault hits the rank the table below names). After every
fault: the exit code and message are the documented ones, no complete checkpoint and no metric record is
lost; at the end `--resume auto` has reached the weights and losses of an uninterrupted run of the same
configuration, bit for bit.

The step of the first kill is drawn from FTC_MATRIX_SEED (default 25; the test prints it)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fault_util import Ledger, bitwise_equal, final_tensors, losses, newest_step
from multiproc_util import DISTRIBUTED, REPO, TINY, base_env, explain, ftc_run, run_dir

pytestmark = pytest.mark.slow
STEPS, EVERY = 8, 2
SEED = int(os.environ.get("FTC_MATRIX_SEED", "25"))


@dataclass(frozen=True)
class Config:
    """One column of the matrix: how many ranks, which distributed block, and which rank each fault hits."""

    name: str
    processes: int
    distributed: str
    ranks: dict = field(default_factory=dict)  # fault action -> rank (both ranks are hit across the chain)
    truncated: str = "optimizer.pt"  # the checkpoint files damaged late in the chain ({e}: the checkpoint's step)
    deleted: str = "scheduler.pt"

    def rank(self, action: str) -> int:
        return self.ranks.get(action, 0)


CONFIGS = (
    Config("one process", 1, ""),
    Config("two processes, ddp", 2, DISTRIBUTED["ddp"],
           {"sigkill": 1, "kill-save": 0, "kill-manifest": 0, "enospc": 0, "sigterm-eval": 1, "sigterm-data": 1,
            "sigkill-late": 0}, deleted="rng_state_1.pth"),
    Config("two processes, zero2", 2, DISTRIBUTED["zero2"],
           {"sigkill": 0, "kill-save": 1, "kill-manifest": 0, "enospc": 1, "sigterm-eval": 0, "sigterm-data": 1,
            "sigkill-late": 1}, truncated="global_step{e}/zero_pp_rank_1_mp_rank_00_optim_states.pt",
           deleted="rng_state_0.pth"),
)

RECIPE = """recipe "{name}"

model "{model}" {{
  dtype = fp32
}}

method lora {{
  rank    = 8
  alpha   = 16
  dropout = 0.0
  targets = all_linear
}}

data {{
  train      = "{train}"
  eval       = "{eval}"
  format     = chat
  max_length = 128
  packing    = false
}}

train {{
  max_steps    = {steps} steps
  lr           = 2e-3
  schedule     = constant
  warmup       = 0 steps
  global_batch = 4
  micro_batch  = {micro}
  optimizer    = adamw
  eval_every   = {every} steps
  seed         = 42
  log_every    = 1 steps
}}

hardware {{
  accelerator   = cpu
  gpus_per_node = {processes}
}}

{distributed}

checkpoint {{
  every     = {every} steps
  keep_last = 20
}}

output {{
  runs_dir = "runs"
}}
"""


def _compile(root: Path, name: str, config: Config) -> Path:
    recipe = root / f"{name}.ftspec"
    recipe.write_text(RECIPE.format(name=name, model=root / "model", train=root / "train.jsonl",
                                    eval=root / "eval.jsonl", steps=STEPS, every=EVERY,
                                    micro=4 // config.processes, processes=config.processes,
                                    distributed=config.distributed), encoding="utf-8")
    out = root / "build" / name
    result = subprocess.run([sys.executable, "-m", "ftc", "compile", str(recipe), "-o", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A private copy of the tiny model and data (the matrix changes them and puts them back)."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(TINY / "model", root / "model")
    shutil.copyfile(TINY / "data" / "train.jsonl", root / "train.jsonl")
    evals = (TINY / "data" / "eval.jsonl").read_text().splitlines(keepends=True)[:8]
    (root / "eval.jsonl").write_text("".join(evals))
    return root


def _port() -> str:
    from ftc.runtime.launch.ports import free_port

    return str(free_port())


class Chain:
    """The faults of one configuration, in a row on one run folder, with what each must leave behind."""

    def __init__(self, root: Path, config: Config):
        self.root, self.config = root, config
        self.slug = config.name.replace(" ", "-").replace(",", "")
        self.folder = _compile(root, f"fm-{self.slug}", config)
        self.run = run_dir(self.folder, "r")
        self.ledger = Ledger(config.name)
        self.multi = config.processes > 1

    def launch(self, *args: str, **env: str):
        if self.multi:
            env["MASTER_PORT"] = _port()
        return ftc_run(self.folder, *args, timeout=300, **env)

    def logs(self) -> dict[Path, int]:
        folder = self.run / "logs"
        return {p: p.stat().st_size for p in folder.glob("*.log")} if folder.is_dir() else {}

    def killed(self) -> int:
        """A SIGKILLed rank: one process dies with the signal; in two, `ftc run` stops the other rank, exits 1."""
        return 1 if self.multi else -9

    def fault(self, kind: str, expect_code: int, *needles: str, first: bool = False, action: str | None = None,
              rank_of: str | None = None, step: int | None = None) -> str:
        before = self.ledger.before(self.run) if self.run.exists() else ({}, [])
        logs = self.logs()
        env = {}
        if action is not None:
            rank = self.config.rank(rank_of or action)
            env = {"FTC_FAULT": action, "FTC_FAULT_STEP": str(step or 1), "FTC_FAULT_RANK": str(rank)}
            if self.multi and expect_code == 1:
                needles += (f"rank {rank} failed",)
        started = time.monotonic()
        result = self.launch(*(("--run-id", "r") if first else ("--resume", "auto")), **env)
        print(f"{self.config.name}: {kind}: exit {result.returncode} after {time.monotonic() - started:.1f} s")
        assert result.returncode == expect_code, f"{self.config.name}, {kind}: {explain(result)}"
        text = result.stdout + result.stderr + "".join(  # what every rank printed during this attempt
            p.read_bytes()[logs.get(p, 0):].decode("utf-8", "replace") for p in sorted(self.logs()))
        for needle in needles:
            assert needle in text, f"{self.config.name}, {kind}: {needle!r} not in\n{explain(result)}\n{text[-6000:]}"
        self.ledger.after(kind, self.run, before)
        assert self.ledger.bytes_lost == 0 and self.ledger.records_lost == 0, (kind, self.ledger)
        return text


def _reference(root: Path, config: Config) -> Path:
    folder = _compile(root, f"fm-ref-{config.processes}-{len(config.distributed)}", config)
    env = {"MASTER_PORT": _port()} if config.processes > 1 else {}
    result = ftc_run(folder, "--run-id", "ref", timeout=300, **env)
    assert result.returncode == 0, explain(result)
    return run_dir(folder, "ref")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name.replace(" ", "-").replace(",", ""))
def test_every_fault_loses_nothing_and_resumes_bit_identical(world, config):
    root = world
    reference = _reference(root, config)
    chain = Chain(root, config)
    run, fault, killed = chain.run, chain.fault, chain.killed()

    first_kill = random.Random(SEED).randint(3, 5)
    print(f"FTC_MATRIX_SEED={SEED}: the first SIGKILL is in the middle of step {first_kill}")
    fault("sigkill mid-step", killed, "in the middle of step", first=True, action="sigkill", step=first_kill)
    n = newest_step(run)
    assert n == 2 * ((first_kill - 1) // 2), n
    save = n + EVERY
    staged = run / "checkpoints" / ".staging" / f"checkpoint-{save}"

    fault("sigkill between checkpoint files", killed, "between files", action="kill-save", step=save)
    assert staged.is_dir() and not (staged / "ftc-manifest.json").exists()
    assert not (staged / "optimizer.pt").exists() and not (staged / f"global_step{save}").exists()
    assert newest_step(run) == n

    fault("sigkill mid-manifest", killed, "half written", action="kill-manifest", step=save)
    half = staged / "ftc-manifest.json.tmp"
    assert half.is_file() and not (staged / "ftc-manifest.json").exists() and newest_step(run) == n

    fault("disk full during a save", 74, "no space left on the device", "--resume auto", f"checkpoint-{n}, is intact",
          action="enospc", step=save)
    assert newest_step(run) == n and not (staged / "ftc-manifest.json").exists()

    fault("sigterm during evaluation", 75, "during the evaluation", "SIGTERM received", "--resume",
          action="sigterm-eval", step=save)
    e = save
    assert newest_step(run) == e + 1  # the periodic save at e, then the preemption save one step later

    ckpt = run / "checkpoints"
    chain.ledger.damage(ckpt / f"checkpoint-{e + 1}", "adapter_model.safetensors", "bitflip")
    fault("sigterm during data preparation", 75, "does not match its checksum", "before training started",
          action="sigterm-data")

    train = root / "train.jsonl"
    original = train.read_bytes()
    train.write_bytes(original + original.splitlines(keepends=True)[0])
    try:
        fault("data file changed before resume", 1, "the training data changed", "start a new run")
    finally:
        train.write_bytes(original)
    template = root / "model" / "chat_template.jinja"
    kept = template.read_bytes()
    template.write_bytes(kept + b"\n")
    try:
        fault("tokenizer changed before resume", 1, "the tokenizer changed", "Restore the original")
    finally:
        template.write_bytes(kept)

    victim = config.truncated.format(e=e)
    chain.ledger.damage(ckpt / f"checkpoint-{e}", victim, "truncate")
    fault("sigkill mid-step", killed, f"skipping {ckpt / f'checkpoint-{e}'}: {victim} is truncated",
          f"from checkpoint-{e - 2}", action="sigkill", rank_of="sigkill-late", step=e + 1)
    chain.ledger.damaged.discard(f"checkpoint-{e}")  # saved again, complete, before the kill
    assert newest_step(run) == e

    chain.ledger.damage(ckpt / f"checkpoint-{e}", config.deleted, "delete")
    fault("resume to the end", 0, f"{config.deleted} is missing", f"from checkpoint-{e - 2}")
    chain.ledger.faults.pop("resume to the end")

    assert losses(run) == losses(reference)  # every loss and eval loss, bit for bit, none twice
    assert bitwise_equal(final_tensors(run), final_tensors(reference))
    chain.ledger.bitwise_resumes += 1
    chain.ledger.write()
    print(chain.ledger)

"""Shared test setup: offline hub, CPU DeepSpeed, and the `--update-goldens` switch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite golden files from the current output instead of comparing")


@pytest.fixture
def update_goldens(request) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture
def golden(update_goldens):
    """golden(path, text): compare `text` with the file at `path` (or rewrite it with --update-goldens)."""

    def check(path: Path, text: str) -> None:
        path = Path(path)
        if update_goldens or not path.exists():
            if not update_goldens:
                pytest.fail(f"golden file {path} is missing; run with --update-goldens to create it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            return
        expected = path.read_text(encoding="utf-8")
        assert text == expected, f"output differs from golden {path.relative_to(REPO)} (--update-goldens to refresh)"

    return check


@pytest.fixture
def one_torch_thread():
    """Train with one torch thread: steadier timings on a shared 2-core machine; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

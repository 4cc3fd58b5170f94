"""The front end never imports the training stack: `ftc check`, `fmt`, `estimate` and `catalog` stay fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "deepspeed", "accelerate", "datasets", "bitsandbytes")


def test_check_fmt_estimate_leave_training_libraries_out():
    example = REPO / "examples" / "llama2-7b-full-zero3.ftspec"
    code = (
        "import sys, contextlib, io\n"
        "from ftc.cli import main, COMMANDS\n"
        "with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['check', {str(example)!r}]) == 0\n"
        f"    assert main(['fmt', '--check', {str(example)!r}]) == 0\n"
        f"    assert main(['estimate', {str(example)!r}]) in (0, 1)\n"
        "    assert main(['catalog']) == 0\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout

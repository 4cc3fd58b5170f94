"""`ftc report RUN` renders a run's summary.json; no training needed."""

from __future__ import annotations

import json

from ftc.cli import main

SUMMARY = {
    "recipe": "tiny", "run_id": "20260101-000000", "status": "completed", "method": "lora", "model": "tiny/model",
    "global_step": 60, "max_steps": 60, "first_train_loss": 4.1, "final_train_loss": 1.1, "first_eval_loss": 2.5,
    "final_eval_loss": 1.08, "best_eval_loss": 1.05, "best_eval_step": 40, "tokens_seen": 116400,
    "tokens_per_second": 2100.5, "train_seconds": 55.2, "wall_seconds": 61.0, "peak_rss_bytes": 800 * 2**20,
    "peak_gpu_bytes": None, "checkpoints": [
        {"name": "checkpoint-40", "step": 40, "metric": "eval_loss", "value": 1.05},
        {"name": "checkpoint-60", "step": 60, "metric": "eval_loss", "value": 1.08}],
    "best_checkpoint": "checkpoint-40", "resumed_from": [], "final_dir": "final", "merged_dir": None,
}


def test_report_prints_the_summary_table(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny" / "20260101-000000"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(SUMMARY))
    assert main(["report", str(tmp_path / "runs" / "tiny")]) == 0  # a recipe folder: its newest run
    out = capsys.readouterr().out
    for text in ("best eval loss", "1.0500 (step 40)", "2.5000 -> 1.0800", "2,100", "0:01:01", "800.0 MiB",
                 "checkpoint-40", "best", "checkpoint-60"):
        assert text in out, text
    assert main(["report", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best_checkpoint"] == "checkpoint-40"


def test_report_on_a_folder_without_summary_is_exit_1(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "no summary.json" in capsys.readouterr().err

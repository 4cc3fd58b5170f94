"""How `parallel = N` splits a machine between trials: GPUs by CUDA_VISIBLE_DEVICES (as many per trial as its
plan has ranks on a node), CPU cores by threads, and each trial's memory against the GPUs it gets. Fast."""

from __future__ import annotations

import os

import pytest

from ftc.runtime.sweep.devices import Slot, plan_slots, trial_fits
from ftc.runtime.sweep.errors import SweepError


def plan(accelerator="gpu", ranks=1, peak=None, host=None) -> dict:
    return {"hardware": {"accelerator": accelerator}, "launch": {"nproc_per_node": ranks, "nnodes": 1},
            "memory": {"peak_bytes_per_gpu": peak, "cpu_bytes_per_node": host}}


def test_gpus_are_split_evenly_between_the_trials(monkeypatch):
    monkeypatch.setattr("ftc.runtime.sweep.devices.gpu_memory", lambda: {})
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert [s.env for s in plan_slots(plan(ranks=2), 2, env)] == [{"CUDA_VISIBLE_DEVICES": "4,5"},
                                                                  {"CUDA_VISIBLE_DEVICES": "6,7"}]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan_slots(plan(), 4, env)] == ["4", "5", "6", "7"]
    with pytest.raises(SweepError, match="need 6 GPUs; 4 visible"):
        plan_slots(plan(ranks=2), 3, env)
    with pytest.raises(SweepError, match="none is visible"):
        plan_slots(plan(), 2, {"CUDA_VISIBLE_DEVICES": ""})


def test_cpu_cores_are_divided_between_the_trials_processes():
    cores = os.cpu_count() or 1
    slots = plan_slots(plan("cpu", ranks=2), 2, {})
    assert len(slots) == 2 and slots[0].env["OMP_NUM_THREADS"] == str(max(1, cores // 4))
    with pytest.raises(SweepError, match="host memory"):
        plan_slots(plan("cpu", host=2**50), 2, {})


def test_a_trial_is_checked_against_the_memory_of_its_gpus():
    small = Slot(0, {}, "GPU 0", (24 * 2**30,))
    assert trial_fits(plan(peak=20 * 2**30), small) is None
    assert "needs 30.0 GiB per GPU; GPU 0 has 24.0 GiB" in trial_fits(plan(peak=30 * 2**30), small)
    assert trial_fits(plan(peak=30 * 2**30), Slot(0, {}, "GPU 0")) is None  # sizes unknown: the compile's check

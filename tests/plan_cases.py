"""Hand-written plans that follow docs/plan.md, one per launch shape, for emitter tests.

They do not go through the front end, so the emitters are tested on every strategy even where no example
recipe uses it.
"""

from __future__ import annotations

import copy


def base_plan() -> dict:
    return {
        "schema_version": 1,
        "ftc_version": "0.1.0",
        "recipe": {
            "name": "case",
            "source": "../../examples/case.ftspec",
            "sources": [{"path": "../../examples/case.ftspec", "sha256": "0" * 64}],
        },
        "model": {
            "name_or_path": "../../examples/tiny/model", "local": True, "revision": "main", "dtype": "fp32",
            "attention": "sdpa", "trust_remote_code": False, "tokenizer": None,
        },
        "method": {
            "kind": "lora",
            "lora": {"rank": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "v_proj"], "modules_to_save": [], "bias": "none"},
            "quantization": None,
        },
        "data": {
            "train": ["../../examples/tiny/data/train.jsonl"], "eval": None, "eval_split": 0.1, "format": "chat",
            "columns": {}, "max_length": 256, "packing": False, "dedup": "exact", "near_dedup_threshold": 0.85,
            "train_on": "completions", "on_bad_rows": "error", "truncation": "right", "seed": 42, "cache_dir": None,
            "max_prompt_length": None,
        },
        "objective": {"kind": "sft", "beta": None, "loss": None, "label_smoothing": None, "reference": "none",
                      "desirable_weight": None, "undesirable_weight": None, "gamma": None,
                      "metrics": ["loss", "eval_loss"]},
        "train": {
            "epochs": 2, "max_steps": None, "lr": 0.0002, "schedule": "cosine", "warmup_steps": None,
            "warmup_ratio": 0.03, "optimizer": "adamw", "adam_betas": [0.9, 0.999], "adam_epsilon": 1e-08,
            "weight_decay": 0.0, "max_grad_norm": 1.0, "gradient_checkpointing": False, "eval_every_steps": 20,
            "logging_steps": 1, "seed": 42,
        },
        "batch": {"global_batch": 8, "micro_batch": 4, "grad_accum": 2, "data_parallel_world": 1, "eval_batch": 4},
        "steps": {"steps_per_epoch": None, "total_steps": None, "source": "runtime", "train_rows": 200},
        "precision": {"mixed": "no"},
        "hardware": {"accelerator": "cpu", "gpu": None, "memory_per_gpu": None, "gpus_per_node": 1, "nodes": 1,
                     "cpu_memory": None},
        "distributed": {"strategy": "none", "world_size": 1, "zero": None, "offload_optimizer": "none",
                        "offload_params": "none", "nvme_path": None, "fsdp": None,
                        "find_unused_parameters": False},
        "checkpoint": {"every_steps": 50, "keep_last": 2, "keep_best": "eval_loss", "best_mode": "min",
                       "full_state": True},
        "tracking": {"backends": ["jsonl"], "mlflow_uri": None},
        "output": {"runs_dir": "../../runs", "merge": False},
        "sweep": None,
        "memory": None,
        "launch": {
            "launcher": "python", "nnodes": 1, "nproc_per_node": 1, "master_addr": "127.0.0.1", "master_port": 29500,
            "entry_module": "ftc.runtime.train", "env": {},
            "files": {"accelerate": "accelerate.yaml", "deepspeed": None, "hostfile": None},
        },
        "auto": [],
        "provenance": {"train.lr": "explicit"},
    }


def _merge(target: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and value:
            _merge(target[key], value)
        else:
            target[key] = value
    return target


def plan_with(**changes) -> dict:
    return _merge(copy.deepcopy(base_plan()), changes)


def cases() -> dict[str, dict]:
    """name -> plan, covering every strategy and launcher the emitters know."""
    return {
        "single_cpu": base_plan(),
        "ddp_cpu_2": plan_with(
            batch={"global_batch": 8, "micro_batch": 2, "grad_accum": 2, "data_parallel_world": 2, "eval_batch": 2},
            hardware={"gpus_per_node": 2},
            distributed={"strategy": "ddp", "world_size": 2},
            launch={"launcher": "accelerate", "nproc_per_node": 2},
        ),
        "zero2_cpu_2": plan_with(
            batch={"global_batch": 8, "micro_batch": 2, "grad_accum": 2, "data_parallel_world": 2, "eval_batch": 2},
            hardware={"gpus_per_node": 2},
            distributed={"strategy": "deepspeed", "world_size": 2, "zero": 2},
            launch={"launcher": "accelerate", "nproc_per_node": 2, "env": {"DS_ACCELERATOR": "cpu"},
                    "files": {"deepspeed": "ds_config.json"}},
        ),
        "zero3_offload_2x8": plan_with(
            method={"kind": "full", "lora": None},
            train={"optimizer": "adamw", "gradient_checkpointing": True},
            batch={"global_batch": 256, "micro_batch": 4, "grad_accum": 4, "data_parallel_world": 16, "eval_batch": 4},
            precision={"mixed": "bf16"},
            hardware={"accelerator": "gpu", "gpu": "a100-80gb", "memory_per_gpu": 85899345920,
                      "gpus_per_node": 8, "nodes": 2, "cpu_memory": 549755813888},
            distributed={"strategy": "deepspeed", "world_size": 16, "zero": 3, "offload_optimizer": "cpu",
                         "offload_params": "cpu"},
            launch={"launcher": "accelerate", "nnodes": 2, "nproc_per_node": 8,
                    "files": {"deepspeed": "ds_config.json", "hostfile": "hostfile"}},
        ),
        "fsdp_gpu_4": plan_with(
            batch={"global_batch": 32, "micro_batch": 8, "grad_accum": 1, "data_parallel_world": 4, "eval_batch": 8},
            precision={"mixed": "bf16"},
            hardware={"accelerator": "gpu", "gpu": "h100-80gb", "memory_per_gpu": 85899345920, "gpus_per_node": 4},
            distributed={"strategy": "fsdp", "world_size": 4,
                         "fsdp": {"sharding": "full_shard", "wrap": "transformer_layer", "offload_params": False}},
            launch={"launcher": "accelerate", "nproc_per_node": 4},
        ),
        "qlora_fp16_1gpu": plan_with(
            method={"kind": "qlora", "quantization": {"quant": "nf4", "double_quant": True, "compute_dtype": "fp16"}},
            train={"optimizer": "paged_adamw_8bit", "max_grad_norm": 0.3},
            precision={"mixed": "fp16"},
            hardware={"accelerator": "gpu", "gpu": "rtx-4090", "memory_per_gpu": 25769803776},
        ),
    }


def data_section(**values) -> dict:
    """A complete plan `data` section (every key the runtime reads), with `values` over these settings."""
    return {"train": [], "eval": None, "eval_split": 0.0, "format": "chat", "columns": {}, "max_length": 2048,
            "packing": False, "dedup": "none", "near_dedup_threshold": 0.85, "train_on": "completions",
            "on_bad_rows": "error", "truncation": "right", "seed": 42, "cache_dir": None, "max_prompt_length": None,
            **values}


def section(path: str, **changes):
    """One typed section of ftc.plan (`"model"`, `"data"`, `"method.lora"`) from the base plan with `changes`,
    for tests that call a runtime function on a section without a whole plan."""
    from ftc.plan import sections

    value = base_plan()
    for key in path.split("."):
        value = value[key]
    kinds = {**sections.SECTIONS, "method.lora": sections.Lora}
    return sections.build(kinds[path], {**value, **changes})

"""`accelerate.yaml`: the accelerate launcher configuration (a `ClusterConfig`).

Distributed types: NO (one process), MULTI_GPU (DDP), FSDP, DEEPSPEED. On a CPU-only machine a multi-process
plan is still written as MULTI_GPU with `use_cpu: false`: accelerate then starts `num_processes` workers
with torchrun and torch picks the gloo backend, whereas `use_cpu: true` / `MULTI_CPU` start a single
process. For DEEPSPEED the precision, ZeRO and clipping live in `ds_config.json` only: accelerate refuses
a config file that also sets them (its `deepspeed_config_file` rule), so `mixed_precision` is left out.
"""

from __future__ import annotations

_TYPES = {"none": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}


def accelerate_config(plan: dict) -> dict:
    dist, launch = plan["distributed"], plan["launch"]
    strategy = dist["strategy"]
    world = dist["world_size"]
    distributed_type = _TYPES[strategy]
    if strategy == "ddp" and world == 1:
        distributed_type = "NO"
    config: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": distributed_type,
        "downcast_bf16": False,
        "enable_cpu_affinity": False,
        "machine_rank": 0,
        "main_training_function": "main",
        "num_machines": launch["nnodes"],
        "num_processes": world,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": plan["hardware"]["accelerator"] == "cpu" and world == 1,
    }
    if distributed_type != "NO":
        config["gpu_ids"] = "all"
    if launch["nnodes"] > 1:
        config["main_process_ip"] = launch["master_addr"]
        config["main_process_port"] = launch["master_port"]
    if strategy != "deepspeed":
        config["mixed_precision"] = plan["precision"]["mixed"]
    if strategy == "deepspeed":
        config["deepspeed_config"] = {
            "deepspeed_config_file": launch["files"]["deepspeed"],
            "deepspeed_multinode_launcher": "standard",
            "zero3_init_flag": dist["zero"] == 3,
        }
    elif strategy == "fsdp" and plan["hardware"]["accelerator"] == "cpu":
        config["fsdp_config"] = _cpu_fsdp(dist["fsdp"])
    elif strategy == "fsdp":
        fsdp = dist["fsdp"]
        config["fsdp_config"] = {
            "fsdp_activation_checkpointing": False,  # the Trainer owns gradient checkpointing (plan.train)
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_backward_prefetch": "BACKWARD_PRE",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_forward_prefetch": False,
            "fsdp_offload_params": bool(fsdp.get("offload_params", False)),
            "fsdp_sharding_strategy": fsdp["sharding"].upper(),
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
            "fsdp_sync_module_states": True,
            "fsdp_use_orig_params": True,
            "fsdp_version": 1,
        }
    return config


def _cpu_fsdp(fsdp: dict) -> dict:
    """FSDP on CPU (gloo): only FSDP2 (`fully_shard`) runs there, and without `sync_module_states` /
    `cpu_ram_efficient_loading`, which broadcast from a GPU. Every rank loads the same weights from disk
    with the same seed instead. Full shard is `reshard_after_forward: true`."""
    return {
        "fsdp_activation_checkpointing": False,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_cpu_ram_efficient_loading": False,
        "fsdp_offload_params": bool(fsdp.get("offload_params", False)),
        "fsdp_reshard_after_forward": fsdp["sharding"] == "full_shard",
        "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        "fsdp_sync_module_states": False,
        "fsdp_version": 2,
    }

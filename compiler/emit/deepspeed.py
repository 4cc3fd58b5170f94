"""`ds_config.json`: the DeepSpeed configuration, concrete values only.

The runtime trains with transformers' Trainer and passes this file as `TrainingArguments(deepspeed=...)`.
The Trainer checks every concrete value against its own arguments, so the keys written here are exactly
the ones the runtime also sets from the plan (docs/plan.md, "DeepSpeed"): the batch triple, gradient
clipping, precision and — only when the optimizer is offloaded, where DeepSpeed needs its own CPU Adam —
the optimizer. The learning-rate schedule always stays with the Trainer, so it is the same with or
without DeepSpeed.
"""

from __future__ import annotations


def ds_config(plan: dict) -> dict | None:
    """The DeepSpeed config for `plan`, or None when the plan does not use DeepSpeed."""
    dist = plan["distributed"]
    if dist["strategy"] != "deepspeed":
        return None
    batch, train = plan["batch"], plan["train"]
    mixed = plan["precision"]["mixed"]
    zero: dict = {"stage": dist["zero"]}
    if dist["zero"] >= 1:
        zero["overlap_comm"] = True
        zero["contiguous_gradients"] = True
    if dist["offload_optimizer"] != "none":
        zero["offload_optimizer"] = _offload(dist["offload_optimizer"], dist)
    if dist["zero"] == 3:
        if dist["offload_params"] != "none":
            zero["offload_param"] = _offload(dist["offload_params"], dist)
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    config: dict = {
        "train_batch_size": batch["global_batch"],
        "train_micro_batch_size_per_gpu": batch["micro_batch"],
        "gradient_accumulation_steps": batch["grad_accum"],
        "gradient_clipping": float(train["max_grad_norm"]),
        "bf16": {"enabled": mixed == "bf16"},
        "fp16": {"enabled": mixed == "fp16"},
        "zero_optimization": zero,
        "steps_per_print": max(int(train.get("logging_steps") or 1), 1),
        "wall_clock_breakdown": False,
    }
    if dist["offload_optimizer"] != "none":
        config["optimizer"] = {
            "type": "AdamW",
            "params": {
                "lr": train["lr"],
                "betas": list(train["adam_betas"]),
                "eps": train["adam_epsilon"],
                "weight_decay": train["weight_decay"],
            },
        }
    else:
        # The Trainer builds the optimizer named in the plan; DeepSpeed accepts it as a client optimizer.
        config["zero_allow_untested_optimizer"] = True
    return config


def _offload(device: str, dist: dict) -> dict:
    entry: dict = {"device": device, "pin_memory": True}
    if device == "nvme":
        entry["nvme_path"] = dist["nvme_path"]
    return entry

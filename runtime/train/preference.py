"""TRL's preference trainers (DPO, KTO, ORPO, SimPO through CPO) configured from the plan, with ftc's
checkpoints (FtcTrainer's staging, manifest and atomic commit), callbacks and metric names.

The data arrive tokenized by ftc's pipeline (runtime/data/preference.py): prompt, chosen and rejected ids
(or prompt, completion ids and a label), so TRL's own tokenization is skipped and the rows TRL trains on are
the rows `ftc data` reported. TRL's metric names (`rewards/chosen`) are logged as `rewards_chosen`, the
names `check` validates sweep and checkpoint metrics against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer

from .checkpoints import CheckpointManager
from .errors import RunError
from ftc.plan import Plan
from .trainer import FtcTrainer, training_kwargs


class _MetricNames(Trainer):
    """Sits between a TRL trainer and Trainer in the MRO: renames the metrics TRL adds before Trainer logs them."""

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log({k.replace("/", "_"): v for k, v in logs.items()}, start_time)


class _NoCard:
    """Before the TRL trainer in the MRO: no model-card README.md beside the checkpoints."""

    def create_model_card(self, *args, **kwargs) -> None:
        return None


def _trainer_classes():
    from trl import DPOTrainer, KTOTrainer
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    class FtcDPOTrainer(FtcTrainer, _NoCard, DPOTrainer, _MetricNames):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # tokenized by ftc's pipeline

    class FtcKTOTrainer(FtcTrainer, _NoCard, KTOTrainer, _MetricNames):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not self.calculate_KL:
                return dataset

            def rotate(batch):  # TRL's KL estimate: each prompt with its batch neighbour's completion
                batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
                return batch

            return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)

    class _OldStyle:
        """ORPO and CPO tokenize row by row into prompt/chosen/rejected input ids, masks and labels."""

        def tokenize_row(self, feature, model=None) -> dict:
            prompt = list(feature["prompt_ids"])
            out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
            for name in ("chosen", "rejected"):
                ids = prompt + list(feature[f"{name}_ids"])
                out[f"{name}_input_ids"] = ids
                out[f"{name}_attention_mask"] = [1] * len(ids)
                out[f"{name}_labels"] = [-100] * len(prompt) + list(feature[f"{name}_ids"])
            return out

    class FtcORPOTrainer(FtcTrainer, _NoCard, _OldStyle, ORPOTrainer, _MetricNames):
        pass

    class FtcCPOTrainer(FtcTrainer, _NoCard, _OldStyle, CPOTrainer, _MetricNames):
        pass

    return {"dpo": FtcDPOTrainer, "kto": FtcKTOTrainer, "orpo": FtcORPOTrainer, "simpo": FtcCPOTrainer}


def _config(plan: Plan, kwargs: dict[str, Any]):
    """The objective's TRL config: TrainingArguments' keywords plus the objective's own."""
    objective = plan.objective
    kind, beta = objective.kind, float(objective.beta)
    lengths = {"max_length": plan.data.max_length}
    if kind == "dpo":
        from trl import DPOConfig

        return DPOConfig(**kwargs, **lengths, beta=beta, loss_type=[objective.loss or "sigmoid"],
                         label_smoothing=float(objective.label_smoothing or 0.0),
                         precompute_ref_log_probs=objective.reference == "precomputed",
                         truncation_mode="keep_start")
    if kind == "kto":
        from trl import KTOConfig

        return KTOConfig(**kwargs, **lengths, beta=beta,
                         desirable_weight=float(objective.desirable_weight),
                         undesirable_weight=float(objective.undesirable_weight),
                         precompute_ref_log_probs=objective.reference == "precomputed")
    old_style = dict(max_completion_length=plan.data.max_length)  # ftc's pipeline has cut every row already
    if kind == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**kwargs, **lengths, **old_style, beta=beta)
    from trl.experimental.cpo import CPOConfig

    return CPOConfig(**kwargs, **lengths, **old_style, beta=beta, loss_type="simpo", cpo_alpha=0.0,
                     simpo_gamma=float(objective.gamma))


def load_reference(plan: Plan, model):
    """A separate frozen reference (`model`), or None where TRL's own reference is right: LoRA's
    adapter-disabled base (`base`), precomputed log-probs, or the reference-free objectives (ORPO, SimPO)."""
    if plan.objective.reference != "model":  # base, precomputed, none
        return None
    from transformers import AutoModelForCausalLM

    from .model import model_source

    try:
        ref = AutoModelForCausalLM.from_pretrained(
            model_source(plan), dtype=getattr(model, "dtype", None),
            attn_implementation=plan.model.attention, trust_remote_code=plan.model.trust_remote_code,
            revision=plan.model.revision)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load the reference model: {exc}") from None
    ref.requires_grad_(False)
    ref.eval()
    return ref


def build_preference_trainer(plan: Plan, model, tokenizer, data, *, output_dir: Path, callbacks: list,
                             report_to: list[str], resuming: bool, checkpoints: CheckpointManager):
    kind = plan.objective.kind
    # the reference loads before the config exists: a DeepSpeed config would make from_pretrained partition it
    # with the config's unresolved batch sizes; TRL prepares (and under ZeRO-3 partitions) it afterwards
    extra = {"ref_model": load_reference(plan, model)} if kind in ("dpo", "kto") else {}
    kwargs = training_kwargs(plan, output_dir, has_eval=data.eval is not None, report_to=report_to,
                             eval_on_start=not resuming, train_examples=len(data.train))
    if kind in ("orpo", "simpo"):  # their batches have no `input_ids` to count
        kwargs.pop("include_num_input_tokens_seen", None)
    config = _config(plan, kwargs)
    cls = _trainer_classes()[kind]
    try:
        trainer = cls(model=model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=tokenizer, callbacks=callbacks, checkpoints=checkpoints,
                      keep_best=plan.checkpoint.keep_best, **extra)
    except ValueError as exc:  # TRL's own setting checks
        raise RunError(f"{kind}: {exc}") from None
    _drop_reference_adapter(trainer.model)
    return trainer


def _drop_reference_adapter(model) -> None:
    """TRL copies a PEFT model's adapter into a frozen `ref` adapter. ftc's adapters are new (LoRA's B is zero),
    so the adapter-disabled base is the same reference without the copy, which would otherwise be held, saved
    in every checkpoint and shipped in the final adapter."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")

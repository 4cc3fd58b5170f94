"""The transformers Trainer, configured entirely from the plan. The one override routes
checkpoint saves through the CheckpointManager (staging folder, manifest, atomic rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer, TrainingArguments

from .checkpoints import CheckpointManager
from .errors import RunError
from ftc.plan import Plan
from ftc.plan.steps import epochs_to_steps

from .speed import ChunkedLossTrainer, apply, optimizer_name

OPTIMIZERS = {"adamw": "adamw_torch", "adamw_fused": "adamw_torch_fused", "adamw_8bit": "adamw_bnb_8bit",
              "paged_adamw": "paged_adamw_32bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "sgd": "sgd", "adafactor": "adafactor"}
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def metric_key(name: str | None) -> str | None:
    """The Trainer's key for a plan metric: evaluation metrics carry an `eval_` prefix."""
    if not name:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"


def interval_steps(plan: Plan, epochs: float | None, train_examples: int | None) -> int | None:
    """An interval the plan gives in epochs (the compiler could not count the steps per epoch) in optimizer
    steps, counted as the Trainer counts an epoch of the prepared training set."""
    if epochs is None:
        return None
    if not train_examples:
        raise RunError("an interval in epochs needs the number of training examples")
    batch = plan.batch
    return epochs_to_steps(epochs, train_examples, batch.micro_batch, batch.grad_accum, batch.data_parallel_world)


def training_arguments(plan: Plan, output_dir: Path, *, has_eval: bool, report_to: list[str],
                       eval_on_start: bool = True, train_examples: int | None = None) -> TrainingArguments:
    return TrainingArguments(**training_kwargs(plan, output_dir, has_eval=has_eval, report_to=report_to,
                                               eval_on_start=eval_on_start, train_examples=train_examples))


def training_kwargs(plan: Plan, output_dir: Path, *, has_eval: bool, report_to: list[str],
                    eval_on_start: bool = True, train_examples: int | None = None) -> dict[str, Any]:
    """TrainingArguments' keywords from the plan (the preference trainers' configs take the same ones)."""
    train, batch, ckpt = plan.train, plan.batch, plan.checkpoint
    # -1: the Trainer counts the steps of `epochs` itself (the plan leaves them to the run: steps.source runtime)
    max_steps = train.max_steps or plan.steps.total_steps or -1
    mixed = plan.precision.mixed
    if mixed == "fp16" and plan.on_cpu:
        raise RunError("fp16 mixed precision needs a GPU; use precision bf16 or no on cpu")
    if train.warmup_steps is not None:
        warmup: float = train.warmup_steps
    else:  # a float below 1 is a ratio of the total steps; neither set means no warmup
        warmup = float(train.warmup_ratio or 0.0)
    eval_every = train.eval_every_steps or interval_steps(plan, train.eval_every_epochs, train_examples)
    eval_every = eval_every if has_eval else None
    save_every = ckpt.every_steps or interval_steps(plan, ckpt.every_epochs, train_examples)
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch.micro_batch,
        per_device_eval_batch_size=batch.eval_batch,
        gradient_accumulation_steps=batch.grad_accum,
        # epochs is unset only when max_steps is, which then wins over it
        num_train_epochs=float(train.epochs) if train.epochs is not None else 1.0,
        max_steps=int(max_steps),
        learning_rate=float(train.lr),
        lr_scheduler_type=SCHEDULES[train.schedule],
        warmup_steps=warmup,
        optim=optimizer_name(plan, OPTIMIZERS),
        weight_decay=float(train.weight_decay),
        adam_beta1=float(train.adam_betas[0]),
        adam_beta2=float(train.adam_betas[1]),
        adam_epsilon=float(train.adam_epsilon),
        max_grad_norm=float(train.max_grad_norm),
        # qlora: prepare_model_for_kbit_training has already set it up on the model
        activation_checkpointing=train.gradient_checkpointing and plan.method.kind != "qlora",
        activation_checkpointing_kwargs={"use_reentrant": False},
        eval_strategy="steps" if eval_every else "no",
        eval_on_start=bool(eval_every) and eval_on_start,  # the "before" number of the eval curve
        eval_steps=int(eval_every) if eval_every else None,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        save_strategy="steps" if save_every else "no",
        save_steps=int(save_every) if save_every else 500,
        save_total_limit=None,  # retention is the CheckpointManager's job
        save_only_model=not ckpt.full_state,
        seed=train.seed,
        bf16=mixed == "bf16",
        fp16=mixed == "fp16",
        use_cpu=plan.on_cpu,
        report_to=report_to or "none",
        disable_tqdm=True,
        remove_unused_columns=False,  # the data pipeline already produced exactly the model inputs
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        # multi-process: the very ds_config.json `ftc compile` wrote (any launcher); DDP/FSDP come from accelerate
        deepspeed=str(plan.folder / plan.launch.files.deepspeed) if plan.distributed.strategy == "deepspeed" else None,
        ddp_find_unused_parameters=plan.distributed.find_unused_parameters,
        # the process group's timeout (`distributed { timeout }`); transformers' own default otherwise
        ddp_timeout=plan.distributed.timeout_s if plan.distributed.timeout_s is not None else 1800,
    )


class FtcTrainer(ChunkedLossTrainer, Trainer):
    """Trainer whose checkpoints are atomic and checksummed (see checkpoints.py)."""

    def __init__(self, *args, checkpoints: CheckpointManager, keep_best: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ftc_checkpoints = checkpoints
        self.ftc_metric_key = metric_key(keep_best)
        self._ftc_staging = False
        self.ftc_saved: list[Path] = []

    def _get_output_dir(self, trial) -> str:
        if self._ftc_staging:
            return str(self.ftc_checkpoints.staging)
        return super()._get_output_dir(trial)

    def _latest_metric(self) -> float | None:
        if not self.ftc_metric_key:
            return None
        for record in reversed(self.state.log_history):
            if self.ftc_metric_key in record:
                return float(record[self.ftc_metric_key])
        return None

    def _save_checkpoint(self, model, trial) -> None:
        self._ftc_staging = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._ftc_staging = False
        if self.args.world_size > 1:  # every rank's shards are in staging before rank 0 checksums them
            self.accelerator.wait_for_everyone()
        if self.args.should_save:
            staged = self.ftc_checkpoints.staging / f"checkpoint-{self.state.global_step}"
            final = self.ftc_checkpoints.commit(staged, self.state.global_step, self._latest_metric())
            self.ftc_saved.append(final)
        if self.args.world_size > 1:  # no rank runs ahead (or exits) while rank 0 commits
            self.accelerator.wait_for_everyone()


def build_trainer(plan: Plan, model, tokenizer, data, *, output_dir: Path, callbacks: list,
                  report_to: list[str], resuming: bool = False) -> FtcTrainer:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    ckpt = plan.checkpoint
    manager = CheckpointManager(output_dir, keep_last=ckpt.keep_last, keep_best=ckpt.keep_best,
                                best_mode=ckpt.best_mode)
    # the plan's efficiency switches; under preference objectives the compiler leaves the chunked loss and
    # packing off (TRL computes its own log-probs), so only `compile` and the optimizer kernel apply there
    speedups = apply(plan, model)
    if plan.objective.kind != "sft":  # TRL's trainers
        from .preference import build_preference_trainer

        trainer = build_preference_trainer(plan, model, tokenizer, data, output_dir=output_dir, callbacks=callbacks,
                                           report_to=report_to, resuming=resuming, checkpoints=manager)
    else:
        args = training_arguments(plan, output_dir, has_eval=data.eval is not None, report_to=report_to,
                                  eval_on_start=not resuming, train_examples=len(data.train))
        trainer = FtcTrainer(
            model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
            data_collator=data.collator, processing_class=tokenizer, callbacks=callbacks,
            checkpoints=manager, keep_best=ckpt.keep_best,
        )
        trainer.ftc_loss_head = speedups.head
    trainer.ftc_speedups = speedups
    if plan.on_cpu and plan.distributed.strategy == "fsdp":
        from ftc.runtime.launch.rank import enable_cpu_fsdp

        enable_cpu_fsdp(trainer)  # accelerate would otherwise fall back to DDP on CPU
    for cb in (ProgressCallback, PrinterCallback):  # our progress line replaces the default bar/printer
        trainer.remove_callback(cb)
    return trainer



"""``relufy``: turn a trained GELU model into a faithful ReLU twin, without labels.

The model as given is frozen as the teacher; a copy becomes the student and is swapped to ReLU: with a
least-squares refit of every MLP down-projection on calibration inputs (road ``"refit"``, the default:
:mod:`hf_lambda_gelu.refit`; with 0 steps that is all, no gradient step), at once (road ``"swap"``: swap,
then distil — the ReluLLaMA road) or through λ-GELU (road ``"lambda"``: λ hardened from 1 to λ* over the
first ``hardening_end`` of the steps while distilling, then exact ReLU forwards). Distilling, the student
learns to reproduce the teacher's hidden states (every layer, attention-masked MSE), its logits (T²·KL) where
it has a head, and, for an embedder, the pooled embedding (1 − cosine); after a refit, the better of the
refit and the distilled twin on a held-out tenth is kept (:mod:`hf_lambda_gelu.relufy_refit`). Labels are
never read unless ``task_alpha`` > 0. The defaults (road, calibration size, learning rate, loss weights) were
chosen on tuning splits: benchmarks/README.md, "relufy".

Built as a ``TrainingArguments`` + ``Trainer`` pair, so a relufy run has what a fine-tune has:
progress bar, logging, bf16, gradient accumulation, checkpoints and resume, ``accelerate launch``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer, TrainingArguments

from .activation import lambda_parameters
from .config import DistillationConfig, HardeningConfig, check_weight, setting_field
from .conversion import convert_to_lambda_gelu
from .distillation import frozen_copy, log_distill_loss, logits_kl, masked_hidden_mse
from .errors import InvalidSettingError
from .fidelity import FidelityReport, Pooling, measure_fidelity, model_kind
from .guards import GuardedTrainingMixin
from .hardening import HardeningCallback
from .model_source import load_model
from .refit import DEFAULT_REFIT_RIDGE
from .relufy_refit import DEFAULT_CALIBRATION_SIZE, batches_of, keep_best, refit_only, refit_splits, refit_student
from .relufy_sharding import gather_twin, is_sharded, shard_blocks
from .reluize import gelu_to_relu, reluize
from .run_plan import RunPlanCallback

__all__ = ["ROADS", "RelufyArguments", "RelufyTrainer", "relufy"]

logger = logging.getLogger(__name__)

ROADS = ("swap", "lambda", "refit")


@dataclass(repr=False)  # keep TrainingArguments.__repr__, which masks every *_token field
class RelufyArguments(TrainingArguments):
    """TrainingArguments for a relufy run, with the distillation settings (HfArgumentParser picks them up).

    >>> args = RelufyArguments(output_dir="out", report_to="none")
    >>> args.road, args.num_train_epochs, args.hidden_alpha, args.task_alpha
    ('refit', 0.0, 1.0, 0.0)
    >>> RelufyArguments(output_dir="out", report_to="none", road="swap").num_train_epochs
    1.0
    """

    learning_rate: float = field(
        default=1e-4,
        metadata={"help": "Peak learning rate of the twin (AdamW, linear decay; chosen on tuning splits)."},
    )
    num_train_epochs: float | None = field(
        default=None,
        metadata={
            "help": "Epochs of the training inputs when max_steps is not set (default: 0 on road 'refit', the refit "
            "alone, chosen on tuning splits; 1 on the roads that distil)."
        },
    )
    road: str = field(
        default="refit",
        metadata={
            "help": "How the student becomes ReLU: 'refit' (the default, chosen on tuning splits: swap, least-squares "
            "refit of each MLP down-projection on calibration inputs, then distil for the steps asked, keeping the "
            "refit if distilling does not bring the twin closer; 0 steps is the refit alone, training-free), 'swap' "
            "(GELU → ReLU at once, then distil) or 'lambda' (GELU → λ-GELU, λ hardened to λ* while distilling, then "
            "ReLU)."
        },
    )
    calibration_size: int = field(
        default=DEFAULT_CALIBRATION_SIZE,
        metadata={
            "help": "road='refit': how many training inputs (a seeded random subset) calibrate the least-squares "
            "refit of each MLP down-projection."
        },
    )
    refit_ridge: float = field(
        default=DEFAULT_REFIT_RIDGE,
        metadata={
            "help": "road='refit': ridge of the refit, relative to the mean diagonal of XᵀX (pulls toward the original weights)."
        },
    )
    hardening_end: float = field(
        default=0.3,
        metadata={
            "help": "road='lambda': fraction of the steps after which λ = λ* and forwards are exact ReLU "
            "(HardeningConfig.hardening_end, with λ pinned from the first step)."
        },
    )
    hidden_alpha: float = field(
        default=1.0, metadata={"help": "Weight of the hidden-state MSE to the original (every layer, masked)."}
    )
    logits_alpha: float = field(
        default=1.0, metadata={"help": "Weight of T²·KL to the original's logits (models with a head)."}
    )
    embedding_alpha: float = field(
        default=1.0, metadata={"help": "Weight of 1 − cosine to the original's pooled embedding (embedders)."}
    )
    distill_temperature: float = setting_field(DistillationConfig, "distill_temperature")
    task_alpha: float = field(
        default=0.0,
        metadata={"help": "Weight of the task loss on labels, when the data has them (0: labels are never read)."},
    )
    student_dropout: bool = field(
        default=False,
        metadata={
            "help": "Keep the model's dropout active in the student while it is distilled. Off by default: the "
            "teacher runs without dropout and the twin should match its deterministic outputs (the saved config "
            "keeps the model's dropout for later fine-tunes)."
        },
    )
    relu_tolerance: float = setting_field(HardeningConfig, "relu_tolerance")

    def __post_init__(self) -> None:
        if self.num_train_epochs is None:
            self.num_train_epochs = 0.0 if self.road == "refit" else 1.0
        super().__post_init__()
        if self.road not in ROADS:
            raise InvalidSettingError("road", self.road, f"use one of {ROADS}.")
        self.hardening_config()  # validates hardening_end and relu_tolerance
        if not (isinstance(self.calibration_size, int) and self.calibration_size > 0):
            raise InvalidSettingError("calibration_size", self.calibration_size, "use a positive number of inputs.")
        if not (self.refit_ridge >= 0 and math.isfinite(self.refit_ridge)):
            raise InvalidSettingError("refit_ridge", self.refit_ridge, "use a finite ridge ≥ 0 (default 1e-3).")
        for name in ("hidden_alpha", "logits_alpha", "embedding_alpha", "task_alpha"):
            check_weight(name, getattr(self, name))
        DistillationConfig(distill_temperature=self.distill_temperature)  # validates T
        if self.hidden_alpha + self.logits_alpha + self.embedding_alpha + self.task_alpha == 0:
            raise InvalidSettingError(
                "hidden_alpha/logits_alpha/embedding_alpha/task_alpha", 0.0, "at least one loss weight must be > 0."
            )
        self._check_length_and_rate()

    def _check_length_and_rate(self) -> None:
        """A finite learning rate and epoch count; a run that trains must take steps at a rate > 0 (the
        training-free road ``"refit"`` may take none)."""
        trains = self.road != "refit"
        if not (math.isfinite(self.learning_rate) and (self.learning_rate > 0 if trains else self.learning_rate >= 0)):
            raise InvalidSettingError(
                "learning_rate", self.learning_rate, "use a finite learning rate > 0 (a rate of 0 changes nothing)."
            )
        epochs = self.num_train_epochs
        by_epochs = self.max_steps <= 0  # max_steps > 0 overrides num_train_epochs
        if not (math.isfinite(epochs) and epochs >= 0) or (trains and by_epochs and epochs == 0):
            raise InvalidSettingError(
                "num_train_epochs",
                epochs,
                "use a finite number of epochs > 0, or max_steps > 0 (no step would leave the twin the naive swap).",
            )

    def hardening_config(self) -> HardeningConfig:
        """road='lambda': λ pinned from the first step and hardened to λ* = c/ε by ``hardening_end``."""
        return HardeningConfig(
            hardening_start=0.0, hardening_end=self.hardening_end, relu_tolerance=self.relu_tolerance
        )


class RelufyTrainer(GuardedTrainingMixin, Trainer):
    """A ``Trainer`` whose loss is the distance of the (ReLU) student to a frozen teacher (plus, optionally, the task loss).

    Args:
        model: the student (already swapped to ReLU or λ-GELU; see :func:`relufy`).
        args: :class:`RelufyArguments`.
        teacher: the frozen original.
        kind: ``"classifier"``, ``"embedder"`` or ``"causal_lm"`` (:func:`hf_lambda_gelu.fidelity.model_kind`).
        pooling: the embedder's pooling.
        **kwargs: what ``transformers.Trainer`` takes.
    """

    def __init__(
        self, model: nn.Module, args: RelufyArguments, *, teacher: nn.Module, kind: str, pooling: Pooling, **kwargs
    ) -> None:
        super().__init__(model=model, args=args, **kwargs)
        self.teacher = teacher
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if self.is_fsdp_enabled and getattr(plugin, "fsdp_version", 1) == 2:  # sharded like the student
            shard_blocks(teacher.to(self.args.device), plugin.transformer_cls_names_to_wrap)
        self.kind = kind
        self.pooling = pooling
        self._logged: list[torch.Tensor] = []

    def _teacher(self, inputs: Mapping[str, Any]) -> Any:
        device = next(v.device for v in inputs.values() if isinstance(v, torch.Tensor))
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad(), self.accelerator.autocast():  # --bf16/--fp16: the student's autocast
            return self.teacher(**inputs, output_hidden_states=True)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        args: RelufyArguments = self.args
        labels = inputs.get("labels") if args.task_alpha > 0 else None
        features = {k: v for k, v in inputs.items() if k != "labels"}
        student = model(**features, output_hidden_states=True)
        teacher = self._teacher(features)
        mask = features.get("attention_mask")
        terms = []
        if args.hidden_alpha > 0:
            terms.append(args.hidden_alpha * masked_hidden_mse(student.hidden_states, teacher.hidden_states, mask))
        logits = getattr(student, "logits", None)
        if logits is not None and args.logits_alpha > 0:
            kl_mask = mask if logits.dim() == 3 else None
            terms.append(args.logits_alpha * logits_kl(logits, teacher.logits, args.distill_temperature, kl_mask))
        if self.kind == "embedder" and args.embedding_alpha > 0:
            s = self.pooling(student.hidden_states[-1], mask)
            t = self.pooling(teacher.hidden_states[-1], mask)
            terms.append(args.embedding_alpha * (1.0 - F.cosine_similarity(s, t, dim=-1)).mean())
        loss = torch.stack(terms).sum() if terms else logits.new_zeros(())
        self._logged.append(loss.detach())
        if labels is not None:
            task = model(**features, labels=labels).loss
            loss = loss + args.task_alpha * task
        return (loss, student) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        log_distill_loss(logs, self._logged)
        super().log(logs, start_time)


def _loss_weights(args: RelufyArguments, kind: str) -> dict[str, float]:
    """The loss weights that apply to a model of ``kind`` (an embedder has no logits, only an embedder a pooled
    embedding), by setting name.

    >>> _loss_weights(RelufyArguments(output_dir="out", report_to="none", logits_alpha=0.5), "classifier")
    {'hidden_alpha': 1.0, 'logits_alpha': 0.5, 'task_alpha': 0.0}
    """
    head = "embedding_alpha" if kind == "embedder" else "logits_alpha"
    return {"hidden_alpha": args.hidden_alpha, head: getattr(args, head), "task_alpha": args.task_alpha}


def _student(model: nn.Module, args: RelufyArguments) -> nn.Module:
    """A copy of ``model`` on its road to ReLU: swapped now (``"swap"``, ``"refit"``) or as λ-GELU at λ = 1
    (``"lambda"``)."""
    student = copy.deepcopy(model)
    student.train()
    if not args.student_dropout:
        for module in student.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    if args.road in ("swap", "refit"):
        gelu_to_relu(student)
    else:
        convert_to_lambda_gelu(student)
        for param in lambda_parameters(student):
            param.requires_grad_(False)  # λ follows the hardening schedule only (pinned from step 0)
    return student


def relufy(
    model: nn.Module | str,
    train_dataset: Any,
    args: RelufyArguments | None = None,
    *,
    eval_dataset: Any = None,
    data_collator: Any = None,
    pooling: Pooling | None = None,
    eval_batch_size: int | None = None,
    callbacks: list | None = None,
    revision: str | None = None,
) -> tuple[nn.Module, FidelityReport | None]:
    """Make a ReLU twin of a trained GELU model by distilling to it on unlabeled inputs.

    The model passed in is not changed: it is the frozen teacher; the twin is a copy. Labels in the data
    are dropped before training unless ``args.task_alpha`` > 0 (then the task loss is added).

    Args:
        model: a trained GELU model: a classifier (sequence/token/image), a causal LM, or a base encoder
            served as an embedder (``AutoModel``; its pooled embedding is distilled); or where to load it from,
            a local folder or a Hub id (:func:`hf_lambda_gelu.model_source.load_model`).
        train_dataset: model inputs (a ``datasets.Dataset`` or a list of dicts), e.g. tokenized texts.
        args: :class:`RelufyArguments` (default: ``output_dir="relufy_output"``, the defaults).
        eval_dataset: held-out inputs for the fidelity report (None: no report).
        data_collator: batches the examples (e.g. ``DataCollatorWithPadding(tokenizer)``).
        pooling: an embedder's pooling (default mean; :func:`hf_lambda_gelu.relufy_data.load_pooling` reads a
            sentence-transformers folder's).
        eval_batch_size: batch size of the fidelity measurement (default ``args.per_device_eval_batch_size``).
        callbacks: more ``TrainerCallback`` s.
        revision: a branch, tag or commit when ``model`` is a Hub id.

    Precision: ``args.bf16`` / ``args.fp16`` run student and teacher in the same autocast. A half-precision
    model is trained on float32 weights (the teacher stays in its dtype) and the twin returned in the model's dtype.

    Returns:
        ``(twin, report)``: the ReLU model (config says ``"relu"``; save it with
        :func:`hf_lambda_gelu.save_release`) and its :class:`~hf_lambda_gelu.fidelity.FidelityReport` (None
        without ``eval_dataset``).

    Raises:
        NoGELUFoundError: the model has no GELU to replace (UncontrolledGELUError: hard-coded ones, BLOOM).

    >>> twin, report = relufy(model, unlabeled, eval_dataset=held_out, data_collator=collator)  # doctest: +SKIP
    >>> report.top1_agreement  # doctest: +SKIP
    0.991
    """
    args = args or RelufyArguments(output_dir="relufy_output", report_to="none")
    if isinstance(model, str):
        loaded = load_model(model, revision=revision)
        model, pooling = loaded.model, pooling or loaded.pooling
    kind = model_kind(model)
    weights = _loss_weights(args, kind)
    if not any(weights.values()):
        other = "logits_alpha (models with logits)" if kind == "embedder" else "embedding_alpha (embedders)"
        raise InvalidSettingError(
            "/".join(weights), 0.0, f"no loss left for this {kind} ({other} only); give one of these a weight > 0."
        )
    pooling = pooling or Pooling()
    if args.task_alpha == 0:
        train_dataset = _without_labels(train_dataset)
    teacher = frozen_copy(model)
    dtype = next(model.parameters()).dtype
    student = _student(model, args)
    if dtype in (torch.float16, torch.bfloat16):
        student.float()  # float32 weights to train; mixed precision is args.bf16 / args.fp16 (the teacher stays)
    training: dict[str, Any] = {"road": args.road}
    selection = None
    if args.road == "refit":  # the selection tenth that judges refit against refit → distil is held out of both
        inputs = len(train_dataset)
        calibration, train_dataset, selection = refit_splits(train_dataset, args)
        training.update(refit_student(student, teacher, calibration, args, data_collator, inputs))
    callbacks = [*(callbacks or []), RunPlanCallback("relufy", args.road, lambda: (train_dataset, eval_dataset))]
    if args.road == "lambda":
        callbacks.append(HardeningCallback(args.hardening_config()))
    if args.road == "refit" and refit_only(args):
        twin, steps, train_loss = student, 0, None
    else:
        start = copy.deepcopy(student.state_dict()) if selection is not None else None
        trainer = RelufyTrainer(
            student,
            args,
            teacher=teacher,
            kind=kind,
            pooling=pooling,
            train_dataset=train_dataset,
            data_collator=data_collator,
            callbacks=callbacks,
        )
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.drop_autocast_wrapper()  # bf16/fp16: the twin computes as its saved checkpoint reloads
        twin, steps, train_loss = trainer.model, trainer.state.global_step, result.training_loss
        if is_sharded(twin):  # FSDP2: every rank gathers the whole twin; the original judges it, not the shards
            twin, teacher = gather_twin(twin), model
        if args.road == "lambda":
            reluize(twin, tolerance=args.relu_tolerance)
        if selection is not None:
            training.update(keep_best(teacher, twin, start, selection, args, kind, pooling, data_collator))
    twin.to(dtype).eval()  # in the original's dtype, as its release is saved
    training.update(
        {
            "steps": steps,
            "train_examples": len(train_dataset),
            "learning_rate": args.learning_rate,
            "hidden_alpha": args.hidden_alpha,
            "logits_alpha": args.logits_alpha if kind != "embedder" else None,
            "embedding_alpha": args.embedding_alpha if kind == "embedder" else None,
            "task_alpha": args.task_alpha,
            "hardening_end": args.hardening_end if args.road == "lambda" else None,
            "train_loss": train_loss,
        }
    )
    if eval_dataset is None:
        return twin, None
    held_out = _without_labels(eval_dataset) if kind != "classifier" else eval_dataset
    loader = batches_of(held_out, eval_batch_size or args.per_device_eval_batch_size, data_collator)
    report = measure_fidelity(model, twin, loader, kind=kind, pooling=pooling)
    report.training = training
    return twin, report


def _without_labels(dataset: Any) -> Any:
    """The dataset with its label columns removed (a ``datasets.Dataset`` or a list of dicts)."""
    names = ("labels", "label", "label_ids")
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        drop = [c for c in columns if c in names]
        return dataset.remove_columns(drop) if drop else dataset
    return [{k: v for k, v in example.items() if k not in names} for example in dataset]

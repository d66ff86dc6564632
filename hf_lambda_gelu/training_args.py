"""``LambdaGELUTrainingArguments``: every λ-GELU setting as a flat TrainingArguments field.

The fields of :class:`LambdaGELUConfig`, :class:`HardeningConfig` and :class:`DistillationConfig` appear here
under the same names, defaults and help (HfArgumentParser needs flat fields); the arguments build the typed
configs (:meth:`~LambdaGELUTrainingArguments.lambda_config`, :meth:`~LambdaGELUTrainingArguments.hardening_config`,
:meth:`~LambdaGELUTrainingArguments.distillation_config`), which validate them. :data:`SETTING_LABELS` names the
settings a run records (:meth:`~LambdaGELUTrainingArguments.settings`) and labels them for the model card's table
(labels cannot live in the fields' metadata: HfArgumentParser passes every metadata key to argparse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from transformers import TrainingArguments

from .config import (
    DistillationConfig,
    HardeningConfig,
    LambdaGELUConfig,
    check_target_lambda,
    check_weight,
    setting_field,
)
from .errors import InvalidSettingError
from .optim import OPTIMIZER_FAMILIES
from .settings_effect import naive_swap_measurable, warn_inert_settings

__all__ = ["SETTING_LABELS", "LambdaGELUTrainingArguments"]

#: The settings a run records (report, model card), in this order, with the card's label of each.
SETTING_LABELS = {
    "lambda_init": "Initial λ",
    "lambda_temperature": "Softplus temperature τ (λ = 1 + softplus(s/τ))",
    "lambda_learning_rate": "λ learning rate",
    "hardening_start": "Hardening starts at (fraction of training)",
    "hardening_end": "λ reaches λ* at (fraction of training; ReLU forwards after it)",
    "hardening_shape": "Hardening schedule shape (log-space)",
    "hardening_lr_floor": "Learning-rate floor in the hardening window (fraction of the learning rate)",
    "hardness_pressure": "Hardness pressure β (β·Σ c/λ while λ learns; 0 = off)",
    "distill_alpha": "Feature distillation to the original model (weight; 0 = off)",
    "distill_logits_alpha": "Logit distillation to the original model (weight; 0 = off)",
    "self_distill_alpha": "Self-distillation to the hardening-start snapshot (weight; 0 = off)",
    "distill_temperature": "Distillation temperature T",
    "relu_tolerance": "Tolerance ε (worst-case per-activation error)",
    "relu_target_lambda": "Explicit target λ*",
    "relu_target_per_layer": "Per-layer λ* (λ* / RMS of the layer's pre-activation)",
}


@dataclass(repr=False)  # keep TrainingArguments.__repr__, which masks every *_token field
class LambdaGELUTrainingArguments(TrainingArguments):
    """TrainingArguments plus the λ-GELU settings (HfArgumentParser picks every field up).

    >>> args = LambdaGELUTrainingArguments(output_dir="out", lambda_learning_rate=0.02, report_to="none")
    >>> args.hardening_start, args.hardening_end, args.distill_alpha
    (0.0, 0.1, 1.0)
    """

    lambda_init: float = setting_field(LambdaGELUConfig, "lambda_init")
    lambda_temperature: float = setting_field(LambdaGELUConfig, "lambda_temperature")
    lambda_per_channel: bool = setting_field(LambdaGELUConfig, "lambda_per_channel")
    lambda_learning_rate: float = field(
        default=1e-2,
        metadata={
            "help": "Learning rate of λ, in λ units per optimizer step (optimizer-aware update). λ learns only "
            "before hardening starts, so it acts only with hardening_start > 0 (at the default 0, λ is pinned from "
            "the first step); 0 keeps λ at lambda_init until hardening."
        },
    )
    lambda_optimizer_family: str = field(
        default="auto",
        metadata={"help": f"How the optimizer normalizes steps, for the λ update: one of {OPTIMIZER_FAMILIES}."},
    )
    hardening_start: float = setting_field(HardeningConfig, "hardening_start")
    hardening_end: float | None = setting_field(HardeningConfig, "hardening_end")
    hardening_shape: str = setting_field(HardeningConfig, "hardening_shape")
    hardening_lr_floor: float | None = setting_field(HardeningConfig, "hardening_lr_floor")
    hardness_pressure: float = field(
        default=0.0,
        metadata={
            "help": "β: adds β·Σ_l c/λ_l (each layer's worst-case distance to ReLU) to the training loss while λ "
            "learns (before hardening), so λ rises where the task loss allows. 0 = off."
        },
    )
    distill_alpha: float = setting_field(DistillationConfig, "distill_alpha")
    distill_logits_alpha: float = setting_field(DistillationConfig, "distill_logits_alpha")
    self_distill_alpha: float = setting_field(DistillationConfig, "self_distill_alpha")
    distill_temperature: float = setting_field(DistillationConfig, "distill_temperature")
    relu_tolerance: float = setting_field(HardeningConfig, "relu_tolerance")
    relu_target_lambda: float | None = setting_field(HardeningConfig, "relu_target_lambda")
    relu_target_per_layer: bool = setting_field(HardeningConfig, "relu_target_per_layer")
    reluize_at_end: bool = field(
        default=True, metadata={"help": "Swap λ-GELU for nn.ReLU at the end of training and report the disruption."}
    )
    naive_swap_baseline: bool | None = field(
        default=None,
        metadata={
            "help": "Keep a copy of the weights when hardening starts and report the disruption of swapping "
            "that model to ReLU directly (a baseline for the hardened swap). Only meaningful with "
            "0 < hardening_start < 1: at 0 that model is the untouched starting checkpoint. Costs one model copy "
            "in CPU memory and a file in each checkpoint. None (default) = on exactly when it is meaningful."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.lambda_learning_rate < math.inf:
            raise InvalidSettingError(
                "lambda_learning_rate", self.lambda_learning_rate, "use a finite λ step size ≥ 0, e.g. 1e-2."
            )
        lambda_config = self.lambda_config()
        if self.lambda_optimizer_family not in OPTIMIZER_FAMILIES:
            raise InvalidSettingError(
                "lambda_optimizer_family", self.lambda_optimizer_family, f"use one of {OPTIMIZER_FAMILIES}."
            )
        self.hardening_end = self.hardening_config().hardening_end  # None → its default
        # λ* must fit in float32 through this run's τ too (the hardening settings alone do not know τ)
        check_target_lambda(self.relu_target_lambda, self.relu_tolerance, lambda_config.lambda_temperature)
        self.distillation_config()
        check_weight("hardness_pressure", self.hardness_pressure)
        self._settle_inert_settings()
        self.dataloader_pin_memory = self.dataloader_pin_memory and torch.accelerator.is_available()  # CPU: no warning

    def _settle_inert_settings(self) -> None:
        """Warn about λ settings that do nothing here; ``naive_swap_baseline`` becomes whether it is measured."""
        names = ("lambda_learning_rate", "hardening_start", "hardness_pressure", "relu_target_per_layer")
        settings = {name: getattr(self, name) for name in (*names, "naive_swap_baseline", "reluize_at_end")}
        warn_inert_settings(settings, stacklevel=5)
        self.naive_swap_baseline = self.naive_swap_baseline is not False and naive_swap_measurable(settings)

    def _values(self, config_cls: type) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(config_cls) if hasattr(self, f.name)}

    def lambda_config(self) -> LambdaGELUConfig:
        """The conversion settings of these arguments (what the trainer converts a GELU model with).

        >>> LambdaGELUTrainingArguments(output_dir="out", lambda_init=2.0, report_to="none").lambda_config()
        LambdaGELUConfig(lambda_init=2.0, lambda_temperature=0.1, lambda_per_channel=False, num_channels=None)
        """
        return LambdaGELUConfig(**self._values(LambdaGELUConfig))

    def hardening_config(self) -> HardeningConfig:
        """The hardening settings of these arguments (what the trainer's :class:`HardeningCallback` takes)."""
        return HardeningConfig(**self._values(HardeningConfig))

    def distillation_config(self) -> DistillationConfig:
        """The distillation settings of these arguments (what the trainer's distiller takes)."""
        return DistillationConfig(**self._values(DistillationConfig))

    def settings(self) -> dict:
        """The run's recorded settings (:data:`SETTING_LABELS`), for the report and the model card.

        >>> list(LambdaGELUTrainingArguments(output_dir="out", report_to="none").settings())[:2]
        ['lambda_init', 'lambda_temperature']
        """
        return {name: getattr(self, name) for name in SETTING_LABELS}

    @property
    def distillation_enabled(self) -> bool:
        """True if any distillation term is on."""
        return self.distillation_config().enabled

    @property
    def target_lambda(self) -> float:
        """The reference hardening target λ* (explicit, or c/ε)."""
        return self.hardening_config().target_lambda

"""``LambdaGELUTrainingArguments``: every λ-GELU knob as a TrainingArguments field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from .config import LambdaGELUConfig
from .errors import InvalidSettingError
from .hardening import (
    HARDENING_SHAPES,
    check_hardening_end,
    check_target_lambda,
    default_hardening_end,
    target_lambda_for_tolerance,
)
from .optim import OPTIMIZER_FAMILIES
from .settings_effect import naive_swap_measurable, warn_inert_settings

__all__ = ["LambdaGELUTrainingArguments"]


def _bad(name: str, value, fix: str) -> InvalidSettingError:
    return InvalidSettingError(name, value, fix)


def _config_field(name: str):
    """The :class:`LambdaGELUConfig` field ``name`` (same default and help) as a training argument."""
    spec = LambdaGELUConfig.__dataclass_fields__[name]
    return field(default=spec.default, metadata=dict(spec.metadata))


@dataclass
class LambdaGELUTrainingArguments(TrainingArguments):
    """TrainingArguments plus the λ-GELU settings (HfArgumentParser picks every field up).

    >>> args = LambdaGELUTrainingArguments(output_dir="out", lambda_learning_rate=0.02, report_to="none")
    >>> args.hardening_start, args.hardening_end, args.distill_alpha
    (0.0, 0.1, 1.0)
    """

    lambda_learning_rate: float = field(
        default=1e-2,
        metadata={
            "help": "Learning rate of λ, in λ units per optimizer step (optimizer-aware update). λ learns only "
            "before hardening starts, so it acts only with hardening_start > 0 (at the default 0, λ is pinned from "
            "the first step); 0 keeps λ at lambda_init until hardening."
        },
    )
    lambda_temperature: float = _config_field("lambda_temperature")
    lambda_init: float = _config_field("lambda_init")
    lambda_per_channel: bool = _config_field("lambda_per_channel")
    lambda_optimizer_family: str = field(
        default="auto",
        metadata={"help": f"How the optimizer normalizes steps, for the λ update: one of {OPTIMIZER_FAMILIES}."},
    )
    hardening_start: float = field(
        default=0.0,
        metadata={
            "help": "Fraction of training after which λ stops learning and is hardened toward λ*; 0 (default) = "
            "from the first step (λ is not learned). 1.0 = no hardening: λ is learned to the end and the model "
            "stays λ-GELU (no ReLU swap; it saves and reloads with hf_lambda_gelu imported)."
        },
    )
    hardening_end: float | None = field(
        default=None,
        metadata={
            "help": "Fraction of training at which λ reaches λ* (in (hardening_start, 1]); the remaining steps train "
            "the model with exact ReLU forwards (consolidation). 1.0 = harden until the last step. None (default) "
            "= hardening_start + 0.1, capped at 1. With "
            "reluize_at_end=False the saved λ-GELU checkpoint runs λ-GELU at λ* again when reloaded (within c/λ*)."
        },
    )
    hardening_lr_floor: float | None = field(
        default=None,
        metadata={
            "help": "Floor on the learning-rate multiplier (a fraction of learning_rate, in (0, 1]) during the "
            "hardening window, so the weights can follow λ; None = the schedule unchanged. Needs a LambdaLR "
            "schedule (every lr_scheduler_type but reduce_lr_on_plateau)."
        },
    )
    distill_alpha: float = field(
        default=1.0,
        metadata={
            "help": "Weight of feature distillation to the frozen original model (the checkpoint given to the "
            "trainer, before training): attention-masked MSE of every layer's hidden states, mean over layers. "
            "Default 1; 0 = off (the cheaper setting; also better when the model keeps training on the data its "
            "checkpoint was trained on: the teacher then anchors it). Costs one extra no-grad forward per step "
            "and one model copy in memory."
        },
    )
    distill_logits_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a T²·KL to the frozen original model's logits (e.g. a causal LM's next-token "
            "distribution; only meaningful when the original head was trained). 0 = off."
        },
    )
    self_distill_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a T²·KL to the logits of a snapshot of the model taken when hardening starts "
            "(self-distillation through the hardening window and after it). 0 = off."
        },
    )
    distill_temperature: float = field(
        default=2.0,
        metadata={"help": "Temperature T of the distillation KL terms (distill_logits_alpha, self_distill_alpha)."},
    )
    hardness_pressure: float = field(
        default=0.0,
        metadata={
            "help": "β: adds β·Σ_l c/λ_l (each layer's worst-case distance to ReLU) to the training loss while λ "
            "learns (before hardening), so λ rises where the task loss allows. 0 = off."
        },
    )
    hardening_shape: str = field(
        default="cosine", metadata={"help": f"Log-space hardening path shape: one of {HARDENING_SHAPES}."}
    )
    relu_tolerance: float = field(
        default=1e-3,
        metadata={"help": "ε: worst-case activation error of the final ReLU swap; λ* = c/ε (1e-3 → λ* ≈ 170)."},
    )
    relu_target_lambda: float | None = field(
        default=None, metadata={"help": "Explicit hardening target λ* (overrides relu_tolerance)."}
    )
    relu_target_per_layer: bool = field(
        default=False,
        metadata={"help": "Scale each layer's λ* by 1/RMS of its pre-activation, measured on training batches."},
    )
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
            raise _bad("lambda_learning_rate", self.lambda_learning_rate, "use a finite λ step size ≥ 0, e.g. 1e-2.")
        self.lambda_config()  # validates lambda_init, lambda_temperature, lambda_per_channel
        if self.lambda_optimizer_family not in OPTIMIZER_FAMILIES:
            raise _bad("lambda_optimizer_family", self.lambda_optimizer_family, f"use one of {OPTIMIZER_FAMILIES}.")
        if not 0.0 <= self.hardening_start <= 1.0:
            raise _bad(
                "hardening_start",
                self.hardening_start,
                "use a fraction of training in [0, 1), or 1.0 for no hardening.",
            )
        if self.hardening_shape not in HARDENING_SHAPES:
            raise _bad("hardening_shape", self.hardening_shape, f"use one of {HARDENING_SHAPES}.")
        if not self.relu_tolerance > 0:
            raise _bad("relu_tolerance", self.relu_tolerance, "ε must be > 0 (default 1e-3).")
        check_target_lambda(self.relu_target_lambda, self.relu_tolerance, self.lambda_temperature)  # λ* ≥ 1, float32
        if self.hardening_end is None:
            self.hardening_end = default_hardening_end(self.hardening_start)
        try:
            check_hardening_end(self.hardening_start, self.hardening_end)
        except ValueError as err:
            raise _bad("hardening_end", self.hardening_end, str(err).split(": ", 1)[1]) from None
        if self.hardening_lr_floor is not None and not 0.0 < self.hardening_lr_floor <= 1.0:
            raise _bad(
                "hardening_lr_floor", self.hardening_lr_floor, "use a fraction of learning_rate in (0, 1], or None."
            )
        for name in ("distill_alpha", "distill_logits_alpha", "self_distill_alpha", "hardness_pressure"):
            if not 0.0 <= getattr(self, name) < math.inf:
                raise _bad(name, getattr(self, name), "use a finite weight ≥ 0 (0 = off).")
        if not 0.0 < self.distill_temperature < math.inf:
            raise _bad("distill_temperature", self.distill_temperature, "T must be finite and > 0 (default 2).")
        self._settle_inert_settings()
        self.dataloader_pin_memory = self.dataloader_pin_memory and torch.accelerator.is_available()  # CPU: no warning

    def _settle_inert_settings(self) -> None:
        """Warn about λ settings that do nothing here; ``naive_swap_baseline`` becomes whether it is measured."""
        names = ("lambda_learning_rate", "hardening_start", "hardness_pressure", "relu_target_per_layer")
        settings = {name: getattr(self, name) for name in (*names, "naive_swap_baseline", "reluize_at_end")}
        warn_inert_settings(settings, stacklevel=5)
        self.naive_swap_baseline = self.naive_swap_baseline is not False and naive_swap_measurable(settings)

    def lambda_config(self) -> LambdaGELUConfig:
        """The conversion settings of these arguments (what the trainer converts a GELU model with).

        >>> LambdaGELUTrainingArguments(output_dir="out", lambda_init=2.0, report_to="none").lambda_config()
        LambdaGELUConfig(lambda_init=2.0, lambda_temperature=0.1, lambda_per_channel=False, num_channels=None)
        """
        return LambdaGELUConfig(
            lambda_init=self.lambda_init,
            lambda_temperature=self.lambda_temperature,
            lambda_per_channel=self.lambda_per_channel,
        )

    @property
    def distillation_enabled(self) -> bool:
        """True if any distillation term is on."""
        return self.distill_alpha > 0 or self.distill_logits_alpha > 0 or self.self_distill_alpha > 0

    @property
    def target_lambda(self) -> float:
        """The reference hardening target λ* (explicit, or c/ε)."""
        return self.relu_target_lambda or target_lambda_for_tolerance(self.relu_tolerance)

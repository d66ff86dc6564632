"""Typed settings, one dataclass per concern, each validated once in ``__post_init__``.

- :class:`LambdaGELUConfig`: the conversion (what ``config.json``'s ``lambda_gelu`` stores);
- :class:`HardeningConfig`: the road from λ to λ* (taken by :class:`~hf_lambda_gelu.HardeningCallback`);
- :class:`DistillationConfig`: the teachers' loss terms (taken by the :class:`~hf_lambda_gelu.distillation.Distiller`).

A setting has one name from the command line to the module: ``LambdaGELUTrainingArguments`` holds these fields
flat (HfArgumentParser needs flat fields) and builds the configs from them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import InvalidSettingError
from .ops import RELU_DISTANCE_CONSTANT

__all__ = [
    "CONFIG_KEY",
    "DEFAULT_TEMPERATURE",
    "FLOAT32_MAX",
    "HARDENING_SHAPES",
    "HARDENING_WINDOW",
    "MIN_LAMBDA_OFFSET",
    "DistillationConfig",
    "HardeningConfig",
    "LambdaGELUConfig",
    "check_lr_floor",
    "check_target_lambda",
    "check_weight",
    "lambda_range_problem",
    "setting_field",
    "target_lambda_for_tolerance",
]

#: The ``config.json`` key that stores :meth:`LambdaGELUConfig.to_dict` on a λ-GELU model's config.
CONFIG_KEY = "lambda_gelu"
DEFAULT_TEMPERATURE = 0.1
#: λ's floor above 1 in the reparameterization (its inverse is finite there).
MIN_LAMBDA_OFFSET = 1e-8
#: The largest float32: λ (and its raw parameter) must stay below it, or the model turns to inf/NaN.
FLOAT32_MAX = 3.4028234663852886e38
HARDENING_SHAPES = ("linear", "cosine")
#: Default length of the hardening window, as a fraction of the run (``end = start + HARDENING_WINDOW``, ≤ 1).
HARDENING_WINDOW = 0.1


def lambda_range_problem(lam: float, temperature: float | None = None) -> str | None:
    """Why ``lam`` cannot be a λ of a float32 model (None when it can): λ < 1, NaN, or float32 overflow.

    With ``temperature`` τ, the raw parameter s = τ·softplus⁻¹(λ − 1) ≈ τ·λ must fit in float32 too and
    map back to a finite λ; without it, λ itself must.

    >>> lambda_range_problem(170.0) is None, lambda_range_problem(0.5)
    (True, 'λ-GELU needs λ ≥ 1 (λ = 1 is GELU)')
    >>> lambda_range_problem(1e39)
    'λ = 1e+39 overflows float32 (λ must stay below 3.4e+38)'
    """
    if not lam >= 1.0:
        return "λ-GELU needs λ ≥ 1 (λ = 1 is GELU)"
    if temperature is None:
        if lam > FLOAT32_MAX:
            return f"λ = {lam:g} overflows float32 (λ must stay below {FLOAT32_MAX:.2g})"
        return None
    y = max(float(lam) - 1.0, MIN_LAMBDA_OFFSET)  # python floats: safe under a meta-device default (loading)
    raw = (y + math.log(-math.expm1(-y))) * temperature  # lambda_to_raw's formula
    if not (lam <= FLOAT32_MAX and abs(raw) <= FLOAT32_MAX and abs(raw) / temperature <= FLOAT32_MAX):
        return f"λ = {lam:g} overflows float32 with τ = {temperature:g} (λ and τ·λ must stay below {FLOAT32_MAX:.2g})"
    return None


def check_weight(name: str, value: Any) -> float:
    """A loss weight: a finite number ≥ 0 (0 = off); raises :class:`InvalidSettingError` naming ``name``.

    >>> check_weight("distill_alpha", 1)
    1.0
    """
    if not (isinstance(value, numbers.Real) and 0.0 <= value < math.inf):
        raise InvalidSettingError(name, value, "use a finite weight ≥ 0 (0 = off).")
    return float(value)


def _check_temperature(name: str, value: Any, default: float) -> float:
    if not (isinstance(value, numbers.Real) and 0.0 < value < math.inf):
        raise InvalidSettingError(name, value, f"the temperature must be finite and > 0 (default {default:g}).")
    return float(value)


def check_lr_floor(floor: float | None) -> None:
    """``hardening_lr_floor``: None, or a fraction of the learning rate in (0, 1]."""
    if floor is not None and not (isinstance(floor, numbers.Real) and 0.0 < floor <= 1.0):
        raise InvalidSettingError("hardening_lr_floor", floor, "use a fraction of learning_rate in (0, 1], or None.")


def check_target_lambda(target_lambda: float | None, tolerance: float, temperature: float | None = None) -> float:
    """The hardening target λ* (``target_lambda``, else c/``tolerance``), checked: ≥ 1 and finite in float32.

    Args:
        target_lambda: explicit λ* (``relu_target_lambda``), or None to use the tolerance.
        tolerance: ε (``relu_tolerance``); λ* = c/ε when ``target_lambda`` is None.
        temperature: the λ reparameterization's τ, when known (then τ·λ* must fit in float32 too).

    Raises:
        InvalidSettingError: naming ``relu_target_lambda`` or ``relu_tolerance``, the value and the range.

    >>> round(check_target_lambda(None, 1e-3), 1), check_target_lambda(250.0, 1e-3)
    (170.0, 250.0)
    """
    if target_lambda is not None:
        problem = lambda_range_problem(target_lambda, temperature)
        if problem:
            raise InvalidSettingError(
                "relu_target_lambda", target_lambda, f"{problem}; use a finite λ* ≥ 1, or leave it unset."
            )
        return float(target_lambda)
    if not tolerance > 0:
        raise InvalidSettingError("relu_tolerance", tolerance, "the tolerance ε must be > 0 (default 1e-3).")
    lam = RELU_DISTANCE_CONSTANT / tolerance
    problem = lambda_range_problem(lam, temperature)
    if problem:
        low = RELU_DISTANCE_CONSTANT / (FLOAT32_MAX * min(1.0, 1.0 / (temperature or 1.0)))
        raise InvalidSettingError(
            "relu_tolerance",
            tolerance,
            f"it gives λ* = c/ε = {lam:.3g}, and {problem}; use ε in [{low:.2g}, {RELU_DISTANCE_CONSTANT:.4g}] "
            "(default 1e-3).",
        )
    return lam


def target_lambda_for_tolerance(tolerance: float) -> float:
    """λ* = c/ε: the smallest λ whose worst-case distance to ReLU is ε (ε = 1e-3 → ≈ 170).

    Raises:
        InvalidSettingError: ε ≤ 0 or NaN, or λ* < 1 (ε > c) or not finite in float32 (ε below ~5e-40).

    >>> round(target_lambda_for_tolerance(1e-3), 1)
    170.0
    """
    return check_target_lambda(None, tolerance)


class _Settings:
    """Shared by the typed configs: their fields as a dict, and a rebuild from one."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None):
        """Rebuild from :meth:`to_dict` output; None gives the defaults.

        Raises:
            InvalidSettingError: an unknown key (the message lists the known ones) or a bad value.
        """
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidSettingError(
                getattr(cls, "_KEY", cls.__name__), unknown, f"unknown setting(s); the known ones are {known}."
            )
        return cls(**values)


@dataclass
class LambdaGELUConfig(_Settings):
    """The λ-GELU conversion settings (what ``config.json``'s ``lambda_gelu`` stores).

    Args:
        lambda_init: initial λ ≥ 1 (1 = exact GELU), finite in float32 (with τ: τ·λ too).
        lambda_temperature: softplus temperature τ > 0 of λ = 1 + softplus(s/τ).
        lambda_per_channel: one λ per channel instead of one per layer.
        num_channels: per-channel sizes by module name; filled in by the conversion when
            ``lambda_per_channel`` is on (not meant to be set by hand).

    Raises:
        InvalidSettingError: a value out of range (the message names the field and the fix).

    >>> cfg = LambdaGELUConfig(lambda_init=2.0)
    >>> cfg.to_dict()
    {'lambda_init': 2.0, 'lambda_temperature': 0.1, 'lambda_per_channel': False}
    >>> LambdaGELUConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    _KEY = CONFIG_KEY

    lambda_init: float = field(
        default=1.0,
        metadata={"help": "Initial λ (≥ 1) when a GELU model is converted; 1 = exact GELU."},
    )
    lambda_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "Temperature τ of the reparameterization λ = 1 + softplus(s/τ)."},
    )
    lambda_per_channel: bool = field(
        default=False, metadata={"help": "One λ per channel instead of one per layer (when converting)."}
    )
    num_channels: dict[str, int] | None = field(
        default=None,
        metadata={"help": "Per-channel sizes by module name, recorded by the conversion (not set by hand)."},
    )

    def __post_init__(self) -> None:
        self.lambda_temperature = _check_temperature("lambda_temperature", self.lambda_temperature, DEFAULT_TEMPERATURE)
        if not isinstance(self.lambda_init, numbers.Real):
            raise InvalidSettingError("lambda_init", self.lambda_init, "use a number ≥ 1 (1 = GELU).")
        problem = lambda_range_problem(self.lambda_init, self.lambda_temperature)
        if problem:
            raise InvalidSettingError("lambda_init", self.lambda_init, f"{problem}.")
        if not isinstance(self.lambda_per_channel, bool):
            raise InvalidSettingError("lambda_per_channel", self.lambda_per_channel, "use True or False.")
        self.lambda_init = float(self.lambda_init)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``config.json`` (``num_channels`` only when recorded)."""
        values = asdict(self)
        if values["num_channels"] is None:
            del values["num_channels"]
        return values


@dataclass
class HardeningConfig(_Settings):
    """How λ is hardened to λ* (the callback's schedule) and what λ* is.

    Args:
        hardening_start: fraction of the run (0 ≤ start < 1) at which λ is pinned and hardening begins;
            1.0 = no hardening (λ is learned to the end and the model stays λ-GELU).
        hardening_end: fraction of the run (start < end ≤ 1) at which λ reaches λ*; later steps train with
            exact ReLU forwards (consolidation). None = ``hardening_start`` + :data:`HARDENING_WINDOW`, capped at 1.
        hardening_shape: ``"linear"`` or ``"cosine"`` interpolation weight in log space.
        relu_tolerance: ε, worst-case activation error of the final ReLU swap (λ* = c/ε).
        relu_target_lambda: explicit λ* (overrides ``relu_tolerance``).
        relu_target_per_layer: scale each layer's λ* by 1/RMS of its pre-activation (measured on training batches).
        hardening_lr_floor: floor on the learning-rate multiplier inside the window (the trainer's scheduler).

    >>> cfg = HardeningConfig(hardening_start=0.5)
    >>> cfg.hardening_end, round(cfg.target_lambda, 1)
    (0.6, 170.0)
    """

    _KEY = "hardening"

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
    hardening_shape: str = field(
        default="cosine",
        metadata={"help": f"Log-space hardening path shape: one of {HARDENING_SHAPES}."},
    )
    hardening_lr_floor: float | None = field(
        default=None,
        metadata={
            "help": "Floor on the learning-rate multiplier (a fraction of learning_rate, in (0, 1]) during the "
            "hardening window, so the weights can follow λ; None = the schedule unchanged. Needs a LambdaLR "
            "schedule (every lr_scheduler_type but reduce_lr_on_plateau)."
        },
    )
    relu_tolerance: float = field(
        default=1e-3,
        metadata={"help": "ε: worst-case activation error of the final ReLU swap; λ* = c/ε (1e-3 → λ* ≈ 170)."},
    )
    relu_target_lambda: float | None = field(
        default=None,
        metadata={"help": "Explicit hardening target λ* (overrides relu_tolerance)."},
    )
    relu_target_per_layer: bool = field(
        default=False,
        metadata={"help": "Scale each layer's λ* by 1/RMS of its pre-activation, measured on training batches."},
    )

    def __post_init__(self) -> None:
        start = self.hardening_start
        if not (isinstance(start, numbers.Real) and 0.0 <= start <= 1.0):
            raise InvalidSettingError(
                "hardening_start", start, "use a fraction of training in [0, 1), or 1.0 for no hardening."
            )
        if self.hardening_shape not in HARDENING_SHAPES:
            raise InvalidSettingError("hardening_shape", self.hardening_shape, f"use one of {HARDENING_SHAPES}.")
        self.hardening_start = float(start)
        self.target_lambda = check_target_lambda(self.relu_target_lambda, self.relu_tolerance)
        if self.hardening_end is None:
            self.hardening_end = min(self.hardening_start + HARDENING_WINDOW, 1.0)
        end = self.hardening_end
        if not (isinstance(end, numbers.Real) and 0.0 < end <= 1.0) or end <= start < 1.0:
            raise InvalidSettingError(
                "hardening_end",
                end,
                f"use a fraction of training in (hardening_start={start!r}, 1] "
                "(1.0 = λ reaches λ* at the last step; less = train as ReLU after it).",
            )
        self.hardening_end = float(end)
        check_lr_floor(self.hardening_lr_floor)
        self.relu_tolerance = float(self.relu_tolerance)
        self.relu_target_lambda = None if self.relu_target_lambda is None else float(self.relu_target_lambda)

    @property
    def enabled(self) -> bool:
        """False for ``hardening_start=1.0``: λ is learned to the end, nothing is pinned or hardened."""
        return self.hardening_start < 1.0


@dataclass
class DistillationConfig(_Settings):
    """The distillation terms of the road to ReLU (each weight 0 = off).

    >>> DistillationConfig().enabled, DistillationConfig(distill_alpha=0.0).enabled
    (True, False)
    """

    _KEY = "distillation"

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

    def __post_init__(self) -> None:
        for name in ("distill_alpha", "distill_logits_alpha", "self_distill_alpha"):
            setattr(self, name, check_weight(name, getattr(self, name)))
        self.distill_temperature = _check_temperature("distill_temperature", self.distill_temperature, 2.0)

    @property
    def enabled(self) -> bool:
        """True if any term is on."""
        return self.distill_alpha > 0 or self.distill_logits_alpha > 0 or self.self_distill_alpha > 0

    @property
    def needs_teacher(self) -> bool:
        """True if a term distils to the original model (feature or logit distillation)."""
        return self.distill_alpha > 0 or self.distill_logits_alpha > 0


def setting_field(config_cls: type, name: str) -> Any:
    """The field ``name`` of a typed config (same default and help) for a flat arguments dataclass.

    >>> setting_field(HardeningConfig, "hardening_shape").default
    'cosine'
    """
    spec = config_cls.__dataclass_fields__[name]
    return field(default=spec.default, metadata=dict(spec.metadata))

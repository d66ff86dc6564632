"""λ-GELU → ReLU swap and the layerwise hardness profile."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

from torch import nn

from .activation import LambdaGELU
from .config_fields import set_activation_fields, to_relu_value
from .errors import NotLambdaGELUModelError, UnhardenedSwapWarning
from .ops import RELU_DISTANCE_CONSTANT
from .registration import CONFIG_KEY
from .remnants import gelu_modules
from .walker import FilterFn, swap_modules

__all__ = ["DEFAULT_RELU_TOLERANCE", "ReluizeReport", "exceeds_tolerance", "hardness_profile", "reluize"]

#: ε: the largest per-activation bound c/λ a swap may have and still count as hardened (λ ≥ λ* ≈ 170).
DEFAULT_RELU_TOLERANCE = 1e-3
_ROUNDING = 1e-6  # λ* = c/ε computed in floats gives c/λ* a hair above ε


def _layer_lambda(module: LambdaGELU) -> float:
    """λ of a layer as one number: the value, or the smallest λ of a per-channel layer (the worst bound)."""
    return float(module.lambda_.detach().min())


def hardness_profile(model: nn.Module) -> dict[str, float]:
    """Qualified module name → λ for every λ-GELU module, in depth (registration) order.

    Per-channel layers report their smallest λ (the one that sets the worst-case ReLU error).

    >>> from hf_lambda_gelu import LambdaGELU
    >>> import torch
    >>> hardness_profile(torch.nn.Sequential(LambdaGELU(init_lambda=2.0)))
    {'0': 2.0}
    """
    return {name: _layer_lambda(m) for name, m in model.named_modules() if isinstance(m, LambdaGELU)}


def exceeds_tolerance(bound: float, tolerance: float) -> bool:
    """Whether a swap bound c/λ exceeds ε (a naive swap); λ* = c/ε itself passes despite float rounding.

    >>> exceeds_tolerance(0.16997 / 170, 1e-3), exceeds_tolerance(0.16997, 1e-3)
    (False, True)
    """
    return bound > tolerance * (1 + _ROUNDING)


@dataclass
class ReluizeReport:
    """What :func:`reluize` swapped: per layer λ at the swap and the bound c/λ on |f(x) − ReLU(x)|.

    ``unhardened`` is True when the worst bound exceeds ``tolerance`` (a naive swap, not a hardened
    one), None when the swap was not checked. ``gelu_remnants`` lists the GELU modules the swap left
    (hard-coded ones no config field controls: they stay GELU).
    """

    swapped: list[str] = field(default_factory=list)
    lambdas: dict[str, float] = field(default_factory=dict)
    error_bounds: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None
    unhardened: bool | None = None
    gelu_remnants: dict[str, str] = field(default_factory=dict)

    @property
    def max_error_bound(self) -> float:
        """Worst-case per-activation error of the swap over all layers (c / min λ)."""
        return max(self.error_bounds.values(), default=0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "max_error_bound": self.max_error_bound}


def reluize(
    model: nn.Module,
    *,
    filter_fn: FilterFn | None = None,
    tolerance: float | None = DEFAULT_RELU_TOLERANCE,
) -> ReluizeReport:
    """Replace every λ-GELU with ``nn.ReLU`` in place and set the config's activation fields to ``"relu"``.

    The per-activation change is at most c/λ (c ≈ 0.16997, docs/method.md §2); the report lists it. A swap
    whose worst bound exceeds ``tolerance`` is a naive swap (λ was never hardened): it is done, marked
    ``unhardened`` in the report, and warned about (:class:`~hf_lambda_gelu.errors.UnhardenedSwapWarning`).

    Args:
        model: a model with λ-GELU activations.
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` chooses which to swap.
        tolerance: ε, the largest accepted bound c/min λ (default 1e-3, i.e. λ ≥ 170); None: no check
            (a caller that hardened to its own per-layer targets).

    Raises:
        NotLambdaGELUModelError: nothing to swap.

    >>> import torch
    >>> from hf_lambda_gelu import LambdaGELU
    >>> report = reluize(torch.nn.Sequential(LambdaGELU(init_lambda=170.0)))
    >>> round(report.max_error_bound, 4)
    0.001
    """
    report = ReluizeReport(tolerance=tolerance)

    def replace(module: nn.Module, name: str) -> nn.Module | None:
        if not isinstance(module, LambdaGELU):
            return None
        lam = _layer_lambda(module)
        report.swapped.append(name)
        report.lambdas[name] = lam
        report.error_bounds[name] = RELU_DISTANCE_CONSTANT / lam
        return nn.ReLU()

    swaps = swap_modules(model, replace, filter_fn)
    if not swaps:
        raise NotLambdaGELUModelError(type(model).__name__)
    config = getattr(model, "config", None)
    if config is not None and not any(isinstance(m, LambdaGELU) for m in model.modules()):
        set_activation_fields(config, to_relu_value)
        if hasattr(config, CONFIG_KEY):
            delattr(config, CONFIG_KEY)
    report.gelu_remnants = gelu_modules(model)
    if tolerance is not None:
        report.unhardened = exceeds_tolerance(report.max_error_bound, tolerance)
        if report.unhardened:
            warnings.warn(
                f"reluize: the worst bound c/min λ = {report.max_error_bound:.3g} exceeds the tolerance {tolerance:g}; "
                "λ was not hardened, so this is a naive GELU → ReLU swap.",
                UnhardenedSwapWarning,
                stacklevel=2,
            )
    return report

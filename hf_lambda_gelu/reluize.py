"""λ-GELU → ReLU swap (hardened, and the naive GELU → ReLU baseline) and the layerwise hardness profile."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

from .activation import LambdaGELU, has_lambda_gelu, lambda_modules
from .config import CONFIG_KEY
from .config_fields import set_activation_fields, to_relu_value
from .conversion import convert_to_lambda_gelu
from .distillation import frozen_copy
from .errors import NotLambdaGELUModelError, UnhardenedSwapWarning
from .gelu_remnants import gelu_modules
from .module_swap import FilterFn, swap_modules
from .ops import RELU_DISTANCE_CONSTANT
from .refit import DEFAULT_REFIT_RIDGE, refit_down_projections

__all__ = [
    "DEFAULT_RELU_TOLERANCE",
    "DISRUPTION_KEYS",
    "ReluizeReport",
    "exceeds_tolerance",
    "gelu_to_relu",
    "hardness_profile",
    "reluize",
    "swap_and_refit",
]

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
    >>> hardness_profile(torch.nn.Sequential(LambdaGELU(lambda_init=2.0)))
    {'0': 2.0}
    """
    return {name: _layer_lambda(m) for name, m in lambda_modules(model)}


def exceeds_tolerance(bound: float, tolerance: float) -> bool:
    """Whether a swap bound c/λ exceeds ε (a naive swap); λ* = c/ε itself passes despite float rounding.

    >>> exceeds_tolerance(0.16997 / 170, 1e-3), exceeds_tolerance(0.16997, 1e-3)
    (False, True)
    """
    return bound > tolerance * (1 + _ROUNDING)


@dataclass
class ReluizeReport:
    """The one report of a λ-GELU → ReLU swap: what was swapped, its bound, and (when measured) its disruption.

    :func:`reluize` fills the swap part: per layer λ at the swap and the bound c/λ on
    |f(x) − ReLU(x)|; ``unhardened`` is True when the worst bound exceeds ``tolerance`` (a naive
    swap, not a hardened one), None when the swap was not checked; ``gelu_remnants`` lists the GELU
    modules the swap left (hard-coded ones no config field controls: they stay GELU).

    :func:`hf_lambda_gelu.swap_measure.measure_swap` adds the disruption on an evaluation set
    (``before_swap`` / ``after_swap`` metrics, ``max_abs_logit_diff``, ``mean_abs_logit_diff``,
    ``prediction_agreement``, ``metric_name``); the trainer adds the hardening context
    (``target_lambda``, ``learned_lambdas``, ``settings``) and the naive-swap baseline (``naive_swap``:
    the same measurement of the model at hardening start swapped directly, or why it is missing in
    ``naive_swap_unavailable``) and the road (``road``: the hardening window in steps, ``max_steps`` and
    the λ/loss logs, :func:`hf_lambda_gelu.window_logs.road_record`). A swap followed by the least-squares
    refit of the down-projections (:func:`gelu_to_relu` with ``calibration``) records it in ``refit``
    (:meth:`hf_lambda_gelu.refit.RefitReport.to_dict`). :meth:`to_dict` is
    ``reluization_report.json``; :meth:`metrics` the flat ``reluize_*`` / ``naive_swap_*`` numbers the trainer logs.
    """

    swapped: list[str] = field(default_factory=list)
    lambdas: dict[str, float] = field(default_factory=dict)
    error_bounds: dict[str, float] = field(default_factory=dict)
    tolerance: float | None = None
    unhardened: bool | None = None
    gelu_remnants: dict[str, str] = field(default_factory=dict)
    metric_name: str | None = None
    eval_dataset: str | None = None
    before_swap: dict[str, float] | None = None
    after_swap: dict[str, float] | None = None
    max_abs_logit_diff: float | None = None
    mean_abs_logit_diff: float | None = None
    prediction_agreement: float | None = None
    target_lambda: float | None = None
    learned_lambdas: dict[str, float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    naive_swap: ReluizeReport | None = None
    naive_swap_unavailable: str | None = None
    road: dict[str, Any] | None = None
    refit: dict[str, Any] | None = None

    @property
    def max_error_bound(self) -> float:
        """Worst-case per-activation error of the swap over all layers (c / min λ)."""
        return max(self.error_bounds.values(), default=0.0)

    @property
    def disruption(self) -> dict[str, float]:
        """max/mean |Δlogits| and the prediction agreement of the swap (empty when not measured)."""
        return {key: getattr(self, key) for key in DISRUPTION_KEYS if getattr(self, key) is not None}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``reluization_report.json``); the measurement fields only when measured,
        ``max_error_bound`` when there are bounds, and of ``naive_swap`` its measurement.

        >>> ReluizeReport(lambdas={"act": 170.0}, error_bounds={"act": 0.001}).to_dict()["max_error_bound"]
        0.001
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values = {k: v for k, v in values.items() if k in _ALWAYS or v is not None}
        if self.naive_swap is not None:  # the baseline's measurement: its metrics and disruption
            naive = {"before_swap": self.naive_swap.before_swap, "after_swap": self.naive_swap.after_swap}
            values["naive_swap"] = {**{k: v for k, v in naive.items() if v is not None}, **self.naive_swap.disruption}
        if not self.settings:
            del values["settings"]
        if self.error_bounds:
            values["max_error_bound"] = self.max_error_bound
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReluizeReport:
        """Rebuild a report from :meth:`to_dict` output (a release's ``reluization_report.json``).

        Raises:
            TypeError: a key that is not a report field (the message names it).

        >>> ReluizeReport.from_dict({"prediction_agreement": 0.99, "max_error_bound": 0.0}).prediction_agreement
        0.99
        """
        values = {k: v for k, v in values.items() if k != "max_error_bound"}
        naive = values.pop("naive_swap", None)
        report = cls(**values)
        report.naive_swap = None if naive is None else cls.from_dict(naive)
        return report

    def add_measurement(
        self, *, before: dict[str, float], after: dict[str, float], disruption: dict[str, float], metric_name: str
    ) -> None:
        """Record the swap's disruption on an evaluation set (metrics before/after, :data:`DISRUPTION_KEYS`)."""
        self.before_swap, self.after_swap, self.metric_name = before, after, metric_name
        for key in DISRUPTION_KEYS:
            setattr(self, key, disruption[key])

    def metrics(self) -> dict[str, float]:
        """Flat metrics: ``reluize_max_error_bound``, ``reluize_<disruption>``, ``reluize_before_<m>`` /
        ``reluize_after_<m>``, and for the naive baseline ``naive_swap_<disruption>`` / ``naive_swap_after_<m>``.

        >>> ReluizeReport(error_bounds={"act": 0.001}, prediction_agreement=1.0).metrics()
        {'reluize_max_error_bound': 0.001, 'reluize_prediction_agreement': 1.0}
        """
        flat = {"reluize_max_error_bound": self.max_error_bound}
        flat.update({f"reluize_{k}": v for k, v in self.disruption.items()})
        flat.update({f"reluize_before_{k}": v for k, v in (self.before_swap or {}).items()})
        flat.update({f"reluize_after_{k}": v for k, v in (self.after_swap or {}).items()})
        if self.naive_swap is not None:
            flat.update({f"naive_swap_{k}": v for k, v in self.naive_swap.disruption.items()})
            flat.update({f"naive_swap_after_{k}": v for k, v in (self.naive_swap.after_swap or {}).items()})
        return flat


#: The disruption figures of a measured swap (:func:`hf_lambda_gelu.swap_measure.compare_predictions`).
DISRUPTION_KEYS = ("max_abs_logit_diff", "mean_abs_logit_diff", "prediction_agreement")
_ALWAYS = frozenset({"swapped", "lambdas", "error_bounds", "tolerance", "unhardened", "gelu_remnants"})


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
    >>> report = reluize(torch.nn.Sequential(LambdaGELU(lambda_init=170.0)))
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
    if config is not None and not has_lambda_gelu(model):
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


def gelu_to_relu(
    model: nn.Module,
    *,
    filter_fn: FilterFn | None = None,
    calibration: Iterable[Mapping[str, Any]] | None = None,
    ridge: float = DEFAULT_REFIT_RIDGE,
) -> ReluizeReport:
    """The naive swap: every GELU (or λ-GELU, at its current λ) becomes ``nn.ReLU``, in place, config updated;
    with ``calibration``, followed by the least-squares refit of each MLP down-projection (:mod:`hf_lambda_gelu.refit`).

    No λ is learned or hardened: this is the baseline the method is measured against. A GELU model
    goes through the same path as the method (exact λ = 1 λ-GELU, then :func:`reluize`), so its
    config says ``"relu"`` afterwards and the report gives the bound c/λ of the swap (c at λ = 1)
    and ``unhardened=True``; no :class:`~hf_lambda_gelu.errors.UnhardenedSwapWarning` is raised (the
    naive swap is done on purpose). With ``calibration`` the model as given (before the swap) is the
    target of the refit, and ``report.refit`` records it.

    Args:
        model: a GELU or λ-GELU model.
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` chooses which activations to swap.
        calibration: batches of unlabeled model inputs to refit on (None: the naive swap alone).
        ridge: the refit's ridge, relative to the mean diagonal of ``XᵀX``.

    Raises:
        NoGELUFoundError: the model has neither GELU nor λ-GELU activations.
        SingularCalibrationError, UnsupportedRefitError: see :func:`hf_lambda_gelu.refit_down_projections`.

    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> model = BertModel(cfg)
    >>> report = gelu_to_relu(model)
    >>> model.config.hidden_act, report.unhardened, round(report.max_error_bound, 4)
    ('relu', True, 0.17)
    """

    def swap(m: nn.Module) -> ReluizeReport:
        if not has_lambda_gelu(m):
            convert_to_lambda_gelu(m, filter_fn=filter_fn)  # λ = 1: exactly the model's GELU, now swappable
        return reluize(m, filter_fn=filter_fn)

    return swap_and_refit(model, swap, calibration, ridge=ridge)


def swap_and_refit(
    model: nn.Module,
    swap: Callable[[nn.Module], ReluizeReport],
    calibration: Iterable[Mapping[str, Any]] | None,
    *,
    ridge: float = DEFAULT_REFIT_RIDGE,
) -> ReluizeReport:
    """``swap(model)`` done on purpose although unhardened (no :class:`~hf_lambda_gelu.errors.UnhardenedSwapWarning`),
    then, with ``calibration``, the least-squares refit of the down-projections to the model as it was before the
    swap, recorded in ``report.refit``. :func:`gelu_to_relu` and ``hf-lambda-gelu reluize --calibration-data`` use it.
    """
    teacher = frozen_copy(model) if calibration is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnhardenedSwapWarning)
        report = swap(model)
    if teacher is not None:
        report.refit = refit_down_projections(model, teacher, calibration, ridge=ridge).to_dict()
    return report

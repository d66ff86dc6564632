"""What a run's λ settings do: whether λ is learned, and which settings have no effect under the others.

The training arguments warn about a setting given a value that does nothing (:class:`InertSettingWarning`);
the trainer, the model card and the plots show a "learned" λ profile only when λ was learned.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .errors import InertSettingWarning

__all__ = ["inert_settings", "lambda_learned", "naive_swap_measurable", "warn_inert_settings"]


def lambda_learned(settings: Mapping[str, Any]) -> bool | None:
    """Whether λ trains in a run: steps before hardening (``hardening_start`` > 0) and ``lambda_learning_rate`` > 0.

    None when the settings do not say (a report without training settings).

    >>> lambda_learned({"hardening_start": 0.0, "lambda_learning_rate": 0.01})
    False
    >>> lambda_learned({"hardening_start": 0.5, "lambda_learning_rate": 0.01})
    True
    """
    start, rate = settings.get("hardening_start"), settings.get("lambda_learning_rate")
    if start is None or rate is None:
        return None
    return start > 0 and rate > 0


def naive_swap_measurable(settings: Mapping[str, Any]) -> bool:
    """Whether the naive-swap baseline means something: a model taken after some training, at hardening start.

    At ``hardening_start=0`` the model at hardening start is the untouched starting checkpoint (a new task's
    head untrained); at 1.0, or without ``reluize_at_end``, there is no swap to compare with.

    >>> naive_swap_measurable({"hardening_start": 0.0}), naive_swap_measurable({"hardening_start": 0.5})
    (False, True)
    """
    start = settings.get("hardening_start", 0.0)
    return 0.0 < start < 1.0 and settings.get("reluize_at_end", True) is not False


def inert_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings given an active value that does nothing under the others → what would make each act.

    >>> list(inert_settings({"hardening_start": 0.0, "hardness_pressure": 0.1, "lambda_learning_rate": 0.01}))
    ['hardness_pressure']
    """
    start = settings.get("hardening_start", 0.0)
    out = {}
    if settings.get("relu_target_per_layer") and not 0.0 < start < 1.0:
        out["relu_target_per_layer"] = (
            "the per-layer scale is measured on the training steps before hardening starts; set 0 < hardening_start < 1"
        )
    if (settings.get("hardness_pressure") or 0) > 0 and not lambda_learned(settings):
        out["hardness_pressure"] = (
            "it pushes λ only while λ learns; set hardening_start > 0 and lambda_learning_rate > 0"
        )
    if settings.get("naive_swap_baseline") and not naive_swap_measurable(settings):
        out["naive_swap_baseline"] = (
            "at hardening_start=0 the model at hardening start is the untouched starting checkpoint (no baseline), "
            "and without hardening or reluize_at_end there is no swap; set 0 < hardening_start < 1"
        )
    return out


def warn_inert_settings(settings: Mapping[str, Any], *, stacklevel: int = 2) -> None:
    """Warn (:class:`InertSettingWarning`, one line each) about every setting of :func:`inert_settings`."""
    for name, fix in inert_settings(settings).items():
        warnings.warn(
            f"{name}={settings[name]!r} does nothing here: {fix}.", InertSettingWarning, stacklevel=stacklevel
        )

"""Disruption of a swap: how far two sets of predictions on the same data are apart, and its measurement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from .errors import InvalidInputError
from .reluize import ReluizeReport

__all__ = ["compare_predictions", "first_array", "main_metric", "measure_swap", "summary_metrics"]

_VOLATILE = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def first_array(predictions) -> np.ndarray:
    """The logits of a ``Trainer.predict`` output (the first array when a tuple is returned)."""
    while isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float64)


def summary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without the timing entries (which differ run to run): what a :class:`ReluizeReport` keeps.

    Args:
        metrics: e.g. ``Trainer.evaluate()``'s dict (``eval_loss``, ``eval_runtime``...).

    >>> summary_metrics({"eval_loss": 0.5, "eval_runtime": 1.2, "eval_samples_per_second": 80.0})
    {'eval_loss': 0.5}
    """
    return {k: float(v) for k, v in metrics.items() if not k.endswith(_VOLATILE)}


def compare_predictions(before, after, label_ids=None) -> dict[str, float]:
    """max/mean |Δlogits| and the agreement of argmax predictions between two prediction sets.

    Positions whose label is -100 (padding, ignored tokens) are left out of the agreement.

    >>> import numpy as np
    >>> compare_predictions(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))["prediction_agreement"]
    0.0
    """
    a, b = first_array(before), first_array(after)
    if a.shape != b.shape:
        raise InvalidInputError(f"Cannot compare predictions of shapes {a.shape} and {b.shape}.")
    diff = np.abs(a - b)
    agree = a.argmax(-1) == b.argmax(-1) if a.ndim > 1 else np.sign(a) == np.sign(b)
    if label_ids is not None:
        labels = np.asarray(first_array(label_ids))
        if labels.shape == agree.shape:
            agree = agree[labels != -100]
    return {
        "max_abs_logit_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_logit_diff": float(diff.mean()) if diff.size else 0.0,
        "prediction_agreement": float(np.mean(agree)) if np.size(agree) else 1.0,
    }


def main_metric(metrics: dict[str, float]) -> str:
    """The metric a report leads with: the first evaluation metric that is not a loss, else ``eval_loss``.

    >>> main_metric({"eval_loss": 0.3, "eval_accuracy": 0.9, "eval_runtime": 1.0})
    'eval_accuracy'
    """
    keys = [k for k in summary_metrics(metrics) if k != "eval_loss" and not k.endswith("_loss")]
    return keys[0] if keys else "eval_loss"


def measure_swap(
    model: nn.Module, swap: Callable[[nn.Module], ReluizeReport], predict: Callable[[nn.Module], Any] | None = None
) -> ReluizeReport:
    """Swap ``model`` in place and, with ``predict``, measure the disruption on the same data before and after.

    Args:
        model: the model to swap.
        swap: :func:`~hf_lambda_gelu.reluize` (the hardened swap) or :func:`~hf_lambda_gelu.gelu_to_relu`
            (the naive one), or any function of the model returning a :class:`ReluizeReport`.
        predict: ``predict(model)`` → a ``transformers`` ``PredictionOutput`` (``predictions``,
            ``label_ids``, ``metrics``), e.g. ``lambda m: trainer.predict(eval_dataset)``; None: no measurement.

    Returns:
        The swap's report with ``before_swap`` / ``after_swap`` metrics and the disruption figures.

    >>> import numpy as np, torch
    >>> from types import SimpleNamespace
    >>> from hf_lambda_gelu import LambdaGELU, reluize
    >>> model = torch.nn.Sequential(LambdaGELU(lambda_init=170.0))
    >>> def predict(m):
    ...     out = m(torch.linspace(-1, 1, 6).reshape(3, 2)).detach().numpy()
    ...     return SimpleNamespace(predictions=out, label_ids=None, metrics={"eval_loss": float(out.sum())})
    >>> measure_swap(model, reluize, predict).prediction_agreement
    1.0
    """
    before = predict(model) if predict is not None else None
    report = swap(model)
    if before is not None:
        after = predict(model)
        report.add_measurement(
            before=summary_metrics(before.metrics),
            after=summary_metrics(after.metrics),
            disruption=compare_predictions(before.predictions, after.predictions, before.label_ids),
            metric_name=main_metric(before.metrics),
        )
    return report

"""Disruption of a swap: how far two sets of predictions on the same data are apart."""

from __future__ import annotations

import numpy as np

__all__ = ["compare_predictions", "first_array", "summary_metrics"]

_VOLATILE = ("runtime", "samples_per_second", "steps_per_second")


def first_array(predictions) -> np.ndarray:
    """The logits of a ``Trainer.predict`` output (the first array when a tuple is returned)."""
    while isinstance(predictions, (tuple, list)):
        predictions = predictions[0]
    return np.asarray(predictions, dtype=np.float64)


def summary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without the timing entries (which differ run to run)."""
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
        raise ValueError(f"Cannot compare predictions of shapes {a.shape} and {b.shape}.")
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

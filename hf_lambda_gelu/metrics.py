"""``compute_metrics`` functions for ``Trainer``: plain functions, no ``evaluate`` script to fetch.

The demo and ``hf-lambda-gelu reluize --eval-file`` measure classification accuracy with
:func:`compute_accuracy`; the recipes keep ``evaluate`` metrics (``--metric_name``) and their offline
``accuracy`` script beside them in ``recipes/metrics/``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["compute_accuracy"]


def compute_accuracy(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for ``Trainer``: the share of argmax predictions equal to the labels.

    Args:
        eval_pred: the ``EvalPrediction`` (logits of shape ``(n, classes)`` and ``n`` labels).

    >>> from transformers import EvalPrediction
    >>> compute_accuracy(EvalPrediction(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])))
    {'accuracy': 0.5}
    """
    predictions = np.asarray(eval_pred.predictions).argmax(-1)
    return {"accuracy": float(np.mean(predictions == np.asarray(eval_pred.label_ids)))}

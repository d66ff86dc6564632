"""Evaluation metrics that work offline: ``evaluate`` metric scripts shipped inside the package.

``evaluate.load("accuracy")`` downloads the metric's script from the Hugging Face Hub (the pip
package ships no metric code), so it fails without network. The metrics the recipes need are shipped
as local ``evaluate`` scripts in ``hf_lambda_gelu/metrics/scripts/`` (package data, see
``pyproject.toml``) and :func:`load_metric` loads them from there; any other name goes to
``evaluate.load`` (the Hub) unchanged.

Perplexity needs no script: the recipes compute it as ``exp(eval_loss)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["SCRIPTS_DIR", "MetricNotFoundError", "load_metric", "local_metric_path", "shipped_metrics"]

#: Folder of the shipped ``evaluate`` scripts (``<name>.py``).
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"


class MetricNotFoundError(FileNotFoundError):
    """A metric is neither shipped with the package nor loadable with ``evaluate.load``."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        super().__init__(
            f"Metric {name!r} is not shipped with hf_lambda_gelu (shipped: {shipped_metrics()}) and "
            f"evaluate.load({name!r}) failed: {str(cause).rstrip('.')}. Without network (HF_HUB_OFFLINE=1), use a shipped metric "
            "or pass the path of a local evaluate metric script (a .py file or a folder holding <name>.py)."
        )


def shipped_metrics() -> list[str]:
    """Names of the metrics shipped as local ``evaluate`` scripts.

    >>> "accuracy" in shipped_metrics()
    True
    """
    return sorted(path.stem for path in SCRIPTS_DIR.glob("*.py"))


def local_metric_path(name: str) -> Path | None:
    """Path of the shipped script for metric ``name`` (e.g. ``"accuracy"``), or ``None``.

    >>> local_metric_path("accuracy").name
    'accuracy.py'
    >>> local_metric_path("bleu") is None
    True
    """
    path = SCRIPTS_DIR / f"{name}.py"
    return path if name in shipped_metrics() else None


def load_metric(name: str, **kwargs: Any):
    """Load an ``evaluate`` metric, preferring the copy shipped with the package (works offline).

    Args:
        name: a metric name (``"accuracy"``: shipped; others are looked up on the Hub by
            ``evaluate.load``), or a path to a local metric script or folder.
        **kwargs: passed to ``evaluate.load`` (``cache_dir``, ``experiment_id``, ``keep_in_memory``...).

    Returns:
        The ``evaluate.EvaluationModule``.

    Raises:
        MetricNotFoundError: not shipped, and ``evaluate.load`` could not find it (e.g. offline).

    >>> from hf_lambda_gelu.metrics import load_metric
    >>> load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
    """
    import evaluate

    local = local_metric_path(name)
    if local is not None:
        return evaluate.load(str(local), **kwargs)
    try:
        return evaluate.load(name, **kwargs)
    except FileNotFoundError as err:
        raise MetricNotFoundError(name, err) from err

"""Accuracy: the fraction of predictions equal to their references.

A local ``evaluate`` metric script beside the recipes so they evaluate offline
(``evaluate.load("accuracy")`` fetches its script from the Hugging Face Hub). It computes the same
number as the Hub's ``evaluate-metric/accuracy`` (scikit-learn's ``accuracy_score``) for single-label
classification, with numpy only. The recipes load it with ``common.load_metric("accuracy")``.

Imports are one per line: ``evaluate`` scans this file for its dependencies and misreads
``import a, b``.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among the examples processed:
Accuracy = (TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): ground-truth labels.
    normalize (`bool`, defaults to `True`): if `False`, return the number of correct predictions instead.
    sample_weight (`list` of `float`, defaults to `None`): per-example weights.

Returns:
    accuracy (`float` or `int`): the fraction (or count) of correct predictions.

Examples:
    >>> accuracy_metric = evaluate.load("recipes/metrics/accuracy.py")  # doctest: +SKIP
    >>> accuracy_metric.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])  # doctest: +SKIP
    {'accuracy': 0.5}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Single-label classification accuracy (what scikit-learn's ``accuracy_score`` computes)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        correct = np.asarray(predictions) == np.asarray(references)
        weights = np.ones(len(correct)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if not normalize:
            return {"accuracy": int(np.dot(correct, weights))}
        return {"accuracy": float(np.average(correct, weights=weights))}

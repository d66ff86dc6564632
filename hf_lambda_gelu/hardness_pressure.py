"""Hardness pressure (``hardness_pressure``): a loss term that lets λ rise where the task allows it.

Issue 10 ("make the learned λ matter"): in short fine-tunes λ moves only to 1.0–1.35, and the
hardening schedule then treats every layer alike. Adding β·Σ_l c/λ_l (each layer's worst-case
distance to ReLU, docs/method.md §2) to the training loss while λ learns pushes every λ up with force β·c/λ²
against the task loss, so the learned profile shows which layers can be hard. Used by
``LambdaGELUTrainer`` before hardening starts (after it, λ is pinned and the term is constant).
"""

from __future__ import annotations

import torch
from torch import nn

from .activation import lambda_modules
from .ops import RELU_DISTANCE_CONSTANT

__all__ = ["hardness_pressure_term"]


def hardness_pressure_term(model: nn.Module) -> torch.Tensor:
    """Σ over λ-GELU layers of the mean worst-case distance to ReLU, c/λ (``hardness_pressure``'s term).

    Pinned layers contribute a constant (no gradient).

    Args:
        model: a model with λ-GELU modules.

    >>> from hf_lambda_gelu import LambdaGELU
    >>> round(hardness_pressure_term(torch.nn.Sequential(LambdaGELU(2.0), LambdaGELU(4.0))).item(), 4)
    0.1275
    """
    terms = [(RELU_DISTANCE_CONSTANT / module.lambda_).mean() for _, module in lambda_modules(model)]
    return torch.stack(terms).sum() if terms else torch.zeros(())

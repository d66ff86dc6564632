"""Optimizer parameter groups with λ in a group of its own."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .activation import lambda_modules

__all__ = ["lambda_param_groups", "lambda_parameters"]

_NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def lambda_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The raw λ parameters of every λ-GELU module."""
    return [module.lambda_raw for _, module in lambda_modules(model)]


def _decay_parameter_names(model: nn.Module) -> set[str]:
    from transformers.trainer_pt_utils import get_parameter_names

    return set(get_parameter_names(model, [nn.LayerNorm], list(_NO_DECAY_PATTERNS)))


def lambda_param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    lambda_lr: float,
    decay_parameter_names: Iterable[str] | None = None,
) -> list[dict]:
    """Parameter groups: decayed weights, non-decayed weights (bias/norm), and λ.

    λ parameters are found by module type and get their own learning rate and no weight decay;
    the rest is split the way transformers' Trainer splits it. Frozen parameters are left out,
    and so are trainable λ of modules PEFT keeps frozen.

    Args:
        model: the model (a PEFT-wrapped model works).
        lr: learning rate of the weights.
        weight_decay: weight decay of the decayed group.
        lambda_lr: learning rate of λ, in λ units per step (see :mod:`hf_lambda_gelu.lambda_update`).
        decay_parameter_names: names that get weight decay; default: like ``Trainer.get_decay_parameter_names``.

    Returns:
        ``[{"params": [...], "weight_decay": wd, "lr": lr}, {... 0.0 ...}, {"params": λs, "lr": lambda_lr,
        "weight_decay": 0.0, "lambda_group": True}]`` (empty groups dropped).

    >>> import torch
    >>> from hf_lambda_gelu import LambdaGELU
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), LambdaGELU())
    >>> [len(g["params"]) for g in lambda_param_groups(model, lr=1e-3, weight_decay=0.01, lambda_lr=1e-2)]
    [1, 1, 1]
    """
    lambda_ids = {id(p) for p in lambda_parameters(model)}
    decay = _decay_parameter_names(model) if decay_parameter_names is None else set(decay_parameter_names)
    groups: dict[str, list[torch.Tensor]] = {"decay": [], "no_decay": [], "lambda": []}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        key = "lambda" if id(param) in lambda_ids else ("decay" if name in decay else "no_decay")
        groups[key].append(param)
    result = [
        {"params": groups["decay"], "weight_decay": weight_decay, "lr": lr},
        {"params": groups["no_decay"], "weight_decay": 0.0, "lr": lr},
        {"params": groups["lambda"], "weight_decay": 0.0, "lr": lambda_lr, "lambda_group": True},
    ]
    return [g for g in result if g["params"]]

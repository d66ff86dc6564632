"""A floor on the learning-rate multiplier during the hardening window (``hardening_lr_floor``).

Why (docs/method.md §9): hardening late under a decaying schedule leaves the weights almost no learning
rate to follow λ from 1 to λ*. :func:`with_lr_floor` composes any ``LambdaLR`` schedule (every
transformers ``lr_scheduler_type`` except ``reduce_lr_on_plateau``) with a floor that applies only
to the optimizer steps of the hardening window; outside it the schedule is unchanged.

Step counting: ``LambdaLR`` gives optimizer step k (1-based) the multiplier f(k − 1), and the
hardening forwards are steps start_step+1 .. end_step, so the floor covers f's arguments
start_step .. end_step − 1. The wrapped multipliers are plain functions of the step (not saved in
the scheduler's state dict), so a resumed run gets the same learning rates.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from .config import check_lr_floor
from .errors import LRFloorError

__all__ = ["with_lr_floor"]


def _floored(fn: Callable[[int], float], floor: float, start_step: int, end_step: int) -> Callable[[int], float]:
    def multiplier(step: int) -> float:
        value = fn(step)
        return max(value, floor) if start_step <= step < end_step else value

    return multiplier


def with_lr_floor(scheduler: LRScheduler, floor: float, start_step: int, end_step: int) -> LambdaLR:
    """A new ``LambdaLR`` on the same optimizer: the old multipliers, floored at ``floor`` in the window.

    Build it right after the original scheduler (before any optimizer step); use it instead of it.

    Args:
        scheduler: a freshly built ``LambdaLR`` (e.g. transformers' linear or cosine schedule).
        floor: the smallest multiplier (fraction of the base learning rate) in the window, in (0, 1].
        start_step: optimizer steps done when hardening starts (``HardeningCallback.start_step_for``).
        end_step: the step whose forward first runs at λ* (``HardeningCallback.end_step_for``).

    Raises:
        LRFloorError: ``scheduler`` is not a ``LambdaLR``.
        InvalidSettingError: ``floor`` outside (0, 1].

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> linear = LambdaLR(opt, lambda step: 1 - step / 10)
    >>> floored = with_lr_floor(linear, 0.5, start_step=6, end_step=10)
    >>> [round(f(s), 2) for f in floored.lr_lambdas for s in (4, 6, 10)]
    [0.6, 0.5, 0.0]
    """
    if not isinstance(scheduler, LambdaLR):
        raise LRFloorError(
            "hardening_lr_floor",
            floor,
            f"it needs a LambdaLR schedule, got {type(scheduler).__name__}; use an lr_scheduler_type such as "
            "'linear', 'cosine' or 'constant_with_warmup', or unset hardening_lr_floor.",
        )
    check_lr_floor(floor)
    lambdas = [_floored(fn, floor, start_step, end_step) for fn in scheduler.lr_lambdas]
    return LambdaLR(scheduler.optimizer, lambdas)

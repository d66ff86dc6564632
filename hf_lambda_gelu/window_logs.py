"""Logs through the hardening window, so λ's road from its start to λ* is in the logs whatever ``logging_steps`` is."""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback

from .hardening import HardeningCallback

__all__ = ["WINDOW_LOG_POINTS", "HardeningWindowLogs", "window_log_steps"]

#: How many steps of the hardening window are logged (evenly spaced, its last step included).
WINDOW_LOG_POINTS = 8


def window_log_steps(start_step: int, end_step: int, points: int = WINDOW_LOG_POINTS) -> set[int]:
    """The steps (1-based, as ``state.global_step`` after them) logged inside the window ``start_step`` → ``end_step``.

    >>> sorted(window_log_steps(0, 100, points=4)), sorted(window_log_steps(10, 12))
    ([25, 50, 75, 100], [11, 12])
    """
    span = end_step - start_step
    return {start_step + max(1, round(k * span / points)) for k in range(1, points + 1)} if span > 0 else set()


class HardeningWindowLogs(TrainerCallback):
    """Ask the Trainer to log at :data:`WINDOW_LOG_POINTS` evenly spaced steps of the hardening window.

    The λ of each logged step (``LambdaGELUTrainer.log``) then traces the road through the window in the
    console, ``state.log_history``, ``report_to`` integrations and the road plot; without it a run whose
    window falls between two logging steps shows λ jump from its start to λ*.

    Args:
        hardening: returns the run's :class:`HardeningCallback` (a getter: a resume may replace it).
    """

    def __init__(self, hardening: Callable[[], HardeningCallback]) -> None:
        self.hardening = hardening

    def on_step_end(self, args, state, control, **kwargs):
        hardening = self.hardening()
        if hardening.started:
            end = hardening.end_step_for(state.max_steps)
            if state.global_step in window_log_steps(hardening.start_step, end):
                control.should_log = True

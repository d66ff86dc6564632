"""Logs through the hardening window, so λ's road from its start to λ* is in the logs whatever ``logging_steps`` is."""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback

from .hardening import HardeningCallback

__all__ = [
    "ALL_LAYERS",
    "WINDOW_LOG_POINTS",
    "HardeningWindowLogs",
    "road_from_log_history",
    "road_record",
    "window_log_steps",
]

#: How many steps of the hardening window are logged (evenly spaced, its last step included).
WINDOW_LOG_POINTS = 8
#: Series name of the one ``lambda`` entry logged when every layer has the same λ.
ALL_LAYERS = "all layers"
_ROAD_KEYS = ("step", "loss", "eval_loss")


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


def road_from_log_history(log_history: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The road in a Trainer log history: ``{"lambda": {layer: [(step, λ)]}, "loss": {...}}``.

    A ``lambda`` entry (every layer at one λ) is the series :data:`ALL_LAYERS`. ``"loss"`` holds the
    ``"train"`` (``loss``) and ``"eval"`` (``eval_loss``) series; entries without a ``step`` are skipped.

    Args:
        log_history: ``trainer.state.log_history`` (or the same list read from ``trainer_state.json``).

    >>> road_from_log_history([{"step": 2, "loss": 0.7, "lambda/layer.0.act": 1.01}])
    {'lambda': {'layer.0.act': [(2, 1.01)]}, 'loss': {'train': [(2, 0.7)], 'eval': []}}
    """
    lambdas: dict[str, list[tuple[int, float]]] = {}
    losses: dict[str, list[tuple[int, float]]] = {"train": [], "eval": []}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if key == "lambda" or key.startswith("lambda/"):
                name = key.removeprefix("lambda/") if key != "lambda" else ALL_LAYERS
                lambdas.setdefault(name, []).append((int(step), float(value)))
        for series, key in (("train", "loss"), ("eval", "eval_loss")):
            if key in entry:
                losses[series].append((int(step), float(entry[key])))
    return {"lambda": lambdas, "loss": losses}


def road_record(
    log_history: list[dict], *, hardening_steps: list[int] | None = None, max_steps: int | None = None
) -> dict:
    """The road of a run as a report stores it: the window in steps, ``max_steps`` and the λ/loss log entries.

    ``save_profile_plot(..., log_history=road["log_history"], hardening_steps=road["hardening_steps"])``
    draws it again (a release's plot, from its report).

    >>> road_record([{"step": 2, "loss": 0.7, "lambda": 1.5, "grad_norm": 3.0}], hardening_steps=[0, 1], max_steps=2)
    {'hardening_steps': [0, 1], 'max_steps': 2, 'log_history': [{'step': 2, 'loss': 0.7, 'lambda': 1.5}]}
    """
    entries = []
    for entry in log_history:
        kept = {k: v for k, v in entry.items() if k in _ROAD_KEYS or k == "lambda" or k.startswith("lambda/")}
        if "step" in kept and len(kept) > 1:
            entries.append(kept)
    return {"hardening_steps": hardening_steps, "max_steps": max_steps, "log_history": entries}

"""Say what runs before it runs: one line with the plan of a training run, then an estimate of its time.

:class:`RunPlanCallback` prints, on the main process, just before the first step::

    relufy: road swap · 900 inputs, 100 held out · 113 steps · batch 8 · device cpu

and, once ``estimate_after`` steps have run (timed from the end of the first one, which includes warm-up)::

    relufy: 0.31 s a step over 5 steps: about 35 s for 113 steps (33 s left)

``relufy`` and ``LambdaGELUTrainer`` add it to their runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

__all__ = ["RunPlanCallback", "format_duration"]

#: Steps timed (after the first) before the estimate is printed.
ESTIMATE_AFTER = 5


def format_duration(seconds: float) -> str:
    """``seconds`` as a person reads it.

    Args:
        seconds: a duration.

    >>> format_duration(42.4), format_duration(200), format_duration(7260)
    ('42 s', '3 min 20 s', '2 h 01 min')
    """
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s".replace(" 00 s", "")
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _count(dataset: Any) -> str:
    if isinstance(dataset, dict):  # several evaluation sets
        return f"{sum(len(d) for d in dataset.values()):,}"
    try:
        return f"{len(dataset):,}"
    except TypeError:  # an iterable dataset: its length is unknown
        return "an unknown number of"


class RunPlanCallback(TrainerCallback):
    """Print the run's plan (road, inputs, held-out inputs, steps, batch size, device) before the first step, and
    an estimate of the run's time from its first steps. Prints on the main process only.

    Args:
        job: who runs (the prefix of each line), e.g. ``"relufy"``.
        road: the road to ReLU this run takes, in words.
        datasets: returns ``(train_dataset, held_out_dataset)`` when training starts (either may be None).
        estimate_after: steps timed after the first before the estimate.
        write: where the lines go (default ``print``).

    >>> from transformers import TrainingArguments, TrainerState, TrainerControl
    >>> lines = []
    >>> plan = RunPlanCallback("relufy", "swap", lambda: (range(90), range(10)), write=lines.append)
    >>> args = TrainingArguments("out", per_device_train_batch_size=8, use_cpu=True, report_to="none")
    >>> plan.on_train_begin(args, TrainerState(max_steps=12), TrainerControl())
    >>> lines[0]
    'relufy: road swap · 90 inputs · 10 held out · 12 steps · batch 8 · device cpu'
    """

    def __init__(
        self,
        job: str,
        road: str,
        datasets: Callable[[], tuple[Any, Any]],
        *,
        estimate_after: int = ESTIMATE_AFTER,
        write: Callable[[str], Any] = print,
    ):
        self.job, self.road, self.datasets, self.estimate_after, self.write = job, road, datasets, estimate_after, write
        self._timed_from: tuple[int, float] | None = None

    def _say(self, state: Any, text: str) -> None:
        if state.is_world_process_zero:
            self.write(f"{self.job}: {text}")

    def on_train_begin(self, args, state, control, **kwargs):
        self._timed_from = None
        train, held_out = self.datasets()
        inputs = f"{_count(train)} inputs" if train is not None else "no training set"
        held_out = f"{_count(held_out)} held out" if held_out is not None else "no held-out set"
        batch = f"batch {args.per_device_train_batch_size}"
        if args.world_size > 1:
            batch += f" × {args.world_size} processes"
        if args.gradient_accumulation_steps > 1:
            batch += f" × {args.gradient_accumulation_steps} accumulated"
        self._say(
            state,
            f"road {self.road} · {inputs} · {held_out} · {state.max_steps:,} steps · {batch} · device {args.device}",
        )

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._timed_from is None:
            self._timed_from = (state.global_step, now)  # the first step (warm-up included) is not timed
            return
        first, since = self._timed_from
        timed = state.global_step - first
        if timed != self.estimate_after:
            return
        per_step = (now - since) / timed
        left = max(state.max_steps - state.global_step, 0) * per_step
        self._say(
            state,
            f"{per_step:.2f} s a step over {timed} steps: about {format_duration(per_step * state.max_steps)} for "
            f"{state.max_steps:,} steps ({format_duration(left)} left)",
        )

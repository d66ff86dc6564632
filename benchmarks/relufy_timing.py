"""Timing a relufy run from the inside: seconds of each optimizer step and of the teacher's forward in it.

Shared by ``relufy_cost.py`` (CPU) and ``gpu_check.py`` (its relufy section). The step is the Trainer's
(``on_step_begin`` → ``on_step_end``, device synchronized); the teacher's share is the median teacher forward
(``RelufyTrainer._teacher``, timed by wrapping it for the run) over the median step, after the warm-up steps.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import torch
from transformers import TrainerCallback

from hf_lambda_gelu import RelufyTrainer, relufy
from hf_lambda_gelu.relufy_sharding import is_sharded, local_parameter_count


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(TrainerCallback):
    """Seconds of every optimizer step (``on_step_begin`` → ``on_step_end``, device synchronized)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)


@contextlib.contextmanager
def teacher_timer(device: torch.device) -> Iterator[SimpleNamespace]:
    """Inside: every ``RelufyTrainer`` teacher forward is timed into ``.times``; ``.local_parameters`` and
    ``.sharded`` say what this rank held of the teacher (FSDP2 shards it)."""
    original = RelufyTrainer._teacher
    seen = SimpleNamespace(times=[], local_parameters=None, sharded=None)

    def timed(self, inputs):
        sync(device)
        start = time.perf_counter()
        out = original(self, inputs)
        sync(device)
        seen.times.append(time.perf_counter() - start)
        seen.local_parameters, seen.sharded = local_parameter_count(self.teacher), is_sharded(self.teacher)
        return out

    RelufyTrainer._teacher = timed
    try:
        yield seen
    finally:
        RelufyTrainer._teacher = original


def timed_relufy(model: Any, data: Any, args: Any, device: torch.device, warmup: int) -> tuple[Any, dict]:
    """``relufy(model, data, args)`` with its steps and teacher forwards timed; ``(twin, timings)``."""
    timer = StepTimer(device)
    with teacher_timer(device) as teacher:
        twin, _ = relufy(model, data, args, callbacks=[timer])
    step = statistics.median(timer.times[warmup:])
    teacher_s = statistics.median(teacher.times[warmup:])
    return twin, {
        "steps": len(timer.times),
        "step_ms_median": step * 1e3,
        "step_ms_min": min(timer.times[warmup:]) * 1e3,  # the least disturbed by other processes on the machine
        "steps_per_second": 1 / step,
        "teacher_ms_median": teacher_s * 1e3,
        "teacher_share": teacher_s / step,
        "teacher_local_parameters": teacher.local_parameters,
        "teacher_sharded": teacher.sharded,
    }

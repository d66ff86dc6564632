"""Deterministic hardening: move every λ from its learned value to a target λ* in log space.

From ``start`` (default: the first step) every λ is pinned (the weights keep training) and set before
each forward on the path log λ_k = (1 − w)·log λ_start + w·log λ* (w linear or cosine in the step), so
λ = λ* exactly at step ``end``; later steps run as exact ReLU ("consolidation"). Targets: λ* = c/ε for a
tolerance ε on sup|x·Φ(λx) − ReLU(x)| = c/λ, an explicit λ*, or per layer λ*/s_l. The derivation is in
docs/method.md §2 and §5; resume and baseline details in docs/design.md.

Usable without the Trainer: call ``update(model, step, max_steps)`` before each forward (step = number
of optimizer steps done so far).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .activation import FLOAT32_MAX, DTensor, lambda_modules, lambda_range_problem
from .errors import InvalidSettingError
from .ops import RELU_DISTANCE_CONSTANT

__all__ = [
    "HARDENING_SHAPES",
    "HARDENING_WINDOW",
    "PRE_HARDENING_WEIGHTS_NAME",
    "HardeningCallback",
    "check_target_lambda",
    "target_lambda_for_tolerance",
]

HARDENING_SHAPES = ("linear", "cosine")
#: Default length of the hardening window, as a fraction of the run (``end = start + HARDENING_WINDOW``, ≤ 1).
HARDENING_WINDOW = 0.1
#: File in each checkpoint written after hardening started: the weights of its start (naive-swap baseline).
PRE_HARDENING_WEIGHTS_NAME = "pre_hardening_weights.safetensors"


def target_lambda_for_tolerance(tolerance: float) -> float:
    """λ* = c/ε: the smallest λ whose worst-case distance to ReLU is ε (ε = 1e-3 → ≈ 170).

    Raises:
        InvalidSettingError: ε ≤ 0 or NaN, or λ* < 1 (ε > c) or not finite in float32 (ε below ~5e-40).
    """
    return check_target_lambda(None, tolerance)


def check_target_lambda(target_lambda: float | None, tolerance: float, temperature: float | None = None) -> float:
    """The hardening target λ* (``target_lambda``, else c/``tolerance``), checked: ≥ 1 and finite in float32.

    Args:
        target_lambda: explicit λ* (``relu_target_lambda``), or None to use the tolerance.
        tolerance: ε (``relu_tolerance``); λ* = c/ε when ``target_lambda`` is None.
        temperature: the λ reparameterization's τ, when known (then τ·λ* must fit in float32 too).

    Raises:
        InvalidSettingError: naming ``relu_target_lambda`` or ``relu_tolerance``, the value and the range.

    >>> round(check_target_lambda(None, 1e-3), 1), check_target_lambda(250.0, 1e-3)
    (170.0, 250.0)
    """
    if target_lambda is not None:
        problem = lambda_range_problem(target_lambda, temperature)
        if problem:
            raise InvalidSettingError(
                "relu_target_lambda", target_lambda, f"{problem}; use a finite λ* ≥ 1, or leave it unset."
            )
        return float(target_lambda)
    if not tolerance > 0:
        raise InvalidSettingError("relu_tolerance", tolerance, "the tolerance ε must be > 0 (default 1e-3).")
    lam = RELU_DISTANCE_CONSTANT / tolerance
    problem = lambda_range_problem(lam, temperature)
    if problem:
        low = RELU_DISTANCE_CONSTANT / (FLOAT32_MAX * min(1.0, 1.0 / (temperature or 1.0)))
        raise InvalidSettingError(
            "relu_tolerance",
            tolerance,
            f"it gives λ* = c/ε = {lam:.3g}, and {problem}; use ε in [{low:.2g}, {RELU_DISTANCE_CONSTANT:.4g}] "
            "(default 1e-3).",
        )
    return lam


def _check(start: float, shape: str, target_lambda: float | None, tolerance: float) -> float:
    """Validate the callback's settings; returns λ*."""
    if not 0.0 <= start <= 1.0:
        raise InvalidSettingError(
            "hardening_start", start, "use a fraction of training in [0, 1), or 1.0 for no hardening."
        )
    if shape not in HARDENING_SHAPES:
        raise InvalidSettingError("hardening_shape", shape, f"use one of {HARDENING_SHAPES}.")
    return check_target_lambda(target_lambda, tolerance)


def default_hardening_end(start: float) -> float:
    """``end`` when none is given: a window of :data:`HARDENING_WINDOW` after ``start``, capped at 1.

    >>> default_hardening_end(0.0), default_hardening_end(0.95)
    (0.1, 1.0)
    """
    return min(float(start) + HARDENING_WINDOW, 1.0)


def check_hardening_end(start: float, end: float) -> None:
    """Raise ValueError unless ``hardening_start < end ≤ 1`` (``end`` = 1: harden to the last step)."""
    if not (0.0 < end <= 1.0) or end <= start < 1.0:
        raise ValueError(
            f"hardening_end={end!r} is invalid: use a fraction of training in (hardening_start={start!r}, 1] "
            "(1.0 = λ reaches λ* at the last step; less = train as ReLU after it)."
        )


def _to_list(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().double().reshape(-1)]


def _full_cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of a weight; a DTensor shard (FSDP2) is gathered first (a collective: every rank calls)."""
    if isinstance(tensor, DTensor):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu().clone()


def _all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        values = values.clone()
        torch.distributed.all_reduce(values)
        values /= torch.distributed.get_world_size()
    return values


class HardeningCallback(TrainerCallback, ExportableState):
    """Pin λ at ``start`` of training and drive it to λ* along a log-space path.

    Args:
        start: fraction of the run (0 ≤ start < 1) at which hardening begins; ``1.0`` means no
            hardening (λ is learned to the end and never pinned; see :attr:`enabled`).
        shape: ``"linear"`` or ``"cosine"`` interpolation weight in log-space.
        tolerance: ε, worst-case activation error of the final ReLU swap (λ* = c/ε).
        target_lambda: explicit λ* (overrides ``tolerance``).
        per_layer: scale each layer's target by 1/RMS of its pre-activation (measured on training batches).
        end: fraction of the run (start < end ≤ 1) at which λ reaches λ*; the steps after it train the
            model with exact ReLU forwards (consolidation). 1.0 = harden until the last step; None (default)
            = ``start`` + :data:`HARDENING_WINDOW` (0.1), capped at 1.
        keep_pre_hardening_state: keep a CPU copy of the weights when hardening starts
            (:attr:`pre_hardening_state`, for the naive-swap baseline of :class:`~hf_lambda_gelu.LambdaGELUTrainer`).

    With any ``transformers.Trainer``, pass it in ``callbacks``: it gets the model from the callback
    arguments, and on resume it restores its schedule from the checkpoint's ``trainer_state.json``
    itself (whatever ``restore_callback_states_from_checkpoint`` says).

    >>> cb = HardeningCallback(start=0.5, tolerance=1e-3)
    >>> round(cb.reference_target, 1)
    170.0
    >>> cb = HardeningCallback(start=0.05, end=0.25)
    >>> cb.start_step_for(100), cb.end_step_for(100)
    (5, 25)
    """

    def __init__(
        self,
        start: float = 0.0,
        shape: str = "cosine",
        tolerance: float = 1e-3,
        target_lambda: float | None = None,
        per_layer: bool = False,
        end: float | None = None,
        keep_pre_hardening_state: bool = False,
    ) -> None:
        reference_target = _check(start, shape, target_lambda, tolerance)
        end = default_hardening_end(start) if end is None else end
        check_hardening_end(start, end)
        self.start = float(start)
        self.end = float(end)
        self.shape = shape
        self.tolerance = float(tolerance)
        self.target_lambda = None if target_lambda is None else float(target_lambda)
        self.reference_target = reference_target
        self.per_layer = per_layer
        # Exact-float schedule inputs (exported with state()):
        self.start_step: int | None = None
        self.start_lambdas: dict[str, list[float]] = {}
        self.targets: dict[str, list[float]] = {}
        # Per-layer RMS accumulation (training batches before hardening):
        self._sq_sums: dict[str, torch.Tensor] = {}
        self._hooks: list = []
        #: CPU copy of the model weights taken when hardening starts (for the naive-swap baseline).
        self.pre_hardening_state: dict[str, torch.Tensor] | None = None
        self.keep_pre_hardening_state = bool(keep_pre_hardening_state)

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "args": {
                "start": self.start,
                "shape": self.shape,
                "tolerance": self.tolerance,
                "target_lambda": self.target_lambda,
                "per_layer": self.per_layer,
                "end": self.end,
                "keep_pre_hardening_state": self.keep_pre_hardening_state,
            },
            "attributes": {
                "start_step": self.start_step,
                "start_lambdas": self.start_lambdas,
                "targets": self.targets,
            },
        }

    def load_state(self, saved: dict) -> None:
        """Restore the schedule inputs saved by :meth:`state` (resuming a run)."""
        attributes = saved.get("attributes", {})
        self.start_step = attributes.get("start_step")
        self.start_lambdas = dict(attributes.get("start_lambdas") or {})
        self.targets = dict(attributes.get("targets") or {})

    @property
    def started(self) -> bool:
        return self.start_step is not None

    @property
    def enabled(self) -> bool:
        """False for ``start=1.0``: λ is learned to the end, nothing is pinned or hardened."""
        return self.start < 1.0

    # -- the schedule ------------------------------------------------------------------------
    def start_step_for(self, max_steps: int) -> int:
        return min(int(round(self.start * max_steps)), max(max_steps - 1, 0))

    def end_step_for(self, max_steps: int) -> int:
        """Step (1-based) whose forward first runs at λ*: round(end·T), after the start step, at most T."""
        start_step = self.start_step if self.started else self.start_step_for(max_steps)
        return min(max(int(round(self.end * max_steps)), start_step + 1), max(max_steps, 1))

    def consolidating(self, step: int, max_steps: int) -> bool:
        """True if the forward of step ``step`` (1-based) runs as exact ReLU (after ``end``)."""
        return self.started and step > self.end_step_for(max_steps)

    def weight(self, step: int, max_steps: int) -> float:
        """Interpolation weight in [0, 1] for the forward of step ``step`` (1-based)."""
        span = max(self.end_step_for(max_steps) - self.start_step, 1)
        p = min(max((step - self.start_step) / span, 0.0), 1.0)
        return p if self.shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * p))

    def lambda_at(self, name: str, step: int, max_steps: int) -> torch.Tensor:
        """λ of layer ``name`` at step ``step`` (float64), a pure function of the saved inputs."""
        w = self.weight(step, max_steps)
        start = torch.tensor(self.start_lambdas[name], dtype=torch.float64)
        target = torch.tensor(self.targets[name], dtype=torch.float64)
        return torch.exp((1.0 - w) * start.log() + w * target.log())

    def _begin(self, model: nn.Module, step: int) -> None:
        self.start_step = step
        rms = self._measured_rms()
        for name, module in lambda_modules(model):
            lam = module.lambda_.detach().double().cpu()
            target = torch.full_like(lam, self.reference_target)
            if self.per_layer and name in rms:
                target = target / rms[name].clamp_min(1e-6)
            self.start_lambdas[name] = _to_list(lam)
            self.targets[name] = _to_list(torch.maximum(target.clamp_min(1.0), lam))
        self._remove_hooks()
        if self.keep_pre_hardening_state:
            self.pre_hardening_state = {k: _full_cpu_copy(v) for k, v in model.state_dict().items()}

    def update(self, model: nn.Module, step: int, max_steps: int) -> bool:
        """Apply the schedule for the forward of the next step; ``step`` = optimizer steps done.

        Returns True while hardening is active. Safe to call repeatedly (idempotent per step).
        """
        if not self.started:
            if not self.enabled or step < self.start_step_for(max_steps):
                return False
            self._begin(model, step)
        relu = self.consolidating(step + 1, max_steps)
        for name, module in lambda_modules(model):
            if name in self.targets:
                module.pin(self.lambda_at(name, step + 1, max_steps).to(torch.float32))
                module.relu_forward = relu
        return True

    # -- pre-activation RMS ------------------------------------------------------------------
    def _attach_rms_hooks(self, model: nn.Module) -> None:
        if not self.per_layer or self.started or self._hooks:
            return
        for name, module in lambda_modules(model):
            self._sq_sums[name] = torch.zeros(2, dtype=torch.float64)

            def hook(mod, inputs, name=name):
                if mod.training:
                    x = inputs[0].detach()
                    self._sq_sums[name] += torch.stack(
                        [x.double().pow(2).sum().cpu(), torch.tensor(float(x.numel()), dtype=torch.float64)]
                    )

            self._hooks.append(module.register_forward_pre_hook(hook))

    def _measured_rms(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, sums in self._sq_sums.items():
            sums = _all_reduce_mean(sums)
            if sums[1] > 0:
                out[name] = (sums[0] / sums[1]).sqrt()
        return out

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._sq_sums.clear()

    # -- TrainerCallback events --------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # On resume, state.stateful_callbacks is the checkpoint's; on a fresh run it is this callback's own.
        saved = state.stateful_callbacks.get(type(self).__name__)
        if saved:
            self.load_state(saved[0] if isinstance(saved, list) else saved)
        self._attach_rms_hooks(model)
        if self.started:  # resumed mid-hardening: re-pin at the checkpoint's step
            step = min(state.global_step, state.max_steps - 1)  # a finished run: as its last step left it
            self.update(model, step, state.max_steps)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.update(model, state.global_step, state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # global_step was incremented: re-apply the value of the step just taken, so that what is
        # logged and checkpointed is the schedule's value, not the optimizer's.
        if self.started:
            self.update(model, state.global_step - 1, state.max_steps)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._remove_hooks()

    # -- the naive-swap baseline's weights in checkpoints (LambdaGELUTrainer.save_model) --------
    def save_pre_hardening_state(self, folder: str) -> None:
        """Write the weights taken when hardening started to ``folder/`` :data:`PRE_HARDENING_WEIGHTS_NAME`."""
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in (self.pre_hardening_state or {}).items()}
        save_file(tensors, os.path.join(folder, PRE_HARDENING_WEIGHTS_NAME))

    def load_pre_hardening_state(self, folder: str) -> bool:
        """Read the weights saved by :meth:`save_pre_hardening_state`; False if ``folder`` has none."""
        from safetensors.torch import load_file

        path = os.path.join(folder, PRE_HARDENING_WEIGHTS_NAME)
        if not os.path.isfile(path):
            return False
        self.pre_hardening_state = load_file(path)
        return True

"""Deterministic hardening: move every λ from its learned value to a target λ* in log space.

From ``hardening_start`` (default: the first step) every λ is pinned (the weights keep training) and set
before each forward on the path log λ_k = (1 − w)·log λ_start + w·log λ* (w linear or cosine in the step),
so λ = λ* exactly at step ``hardening_end``; later steps run as exact ReLU ("consolidation"). Targets: λ* = c/ε for a
tolerance ε on sup|x·Φ(λx) − ReLU(x)| = c/λ, an explicit λ*, or per layer λ*/s_l (the settings:
:class:`~hf_lambda_gelu.config.HardeningConfig`). The derivation is in docs/method.md §2 and §5.

Usable without the Trainer: call ``update(model, step, max_steps)`` before each forward (step = number
of optimizer steps done so far).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .activation import DTensor, lambda_modules
from .config import HardeningConfig, target_lambda_for_tolerance

__all__ = ["PRE_HARDENING_WEIGHTS_NAME", "HardeningCallback", "target_lambda_for_tolerance"]

#: File in each checkpoint written after hardening started: the weights of its start (naive-swap baseline).
PRE_HARDENING_WEIGHTS_NAME = "pre_hardening_weights.safetensors"


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
    """Pin λ at ``hardening_start`` of training and drive it to λ* along a log-space path.

    Args:
        config: the :class:`~hf_lambda_gelu.config.HardeningConfig` (default: its defaults).
        keep_pre_hardening_state: keep a CPU copy of the weights when hardening starts
            (:attr:`pre_hardening_state`, for the naive-swap baseline of :class:`~hf_lambda_gelu.LambdaGELUTrainer`).
        **settings: :class:`~hf_lambda_gelu.config.HardeningConfig` fields, over ``config``
            (``hardening_start``, ``hardening_end``, ``hardening_shape``, ``relu_tolerance``, ...).

    With any ``transformers.Trainer``, pass it in ``callbacks``: it gets the model from the callback
    arguments, and on resume it restores its schedule from the checkpoint's ``trainer_state.json``
    itself (whatever ``restore_callback_states_from_checkpoint`` says).

    >>> cb = HardeningCallback(hardening_start=0.5, relu_tolerance=1e-3)
    >>> round(cb.config.target_lambda, 1)
    170.0
    >>> cb = HardeningCallback(hardening_start=0.05, hardening_end=0.25)
    >>> cb.start_step_for(100), cb.end_step_for(100)
    (5, 25)
    """

    def __init__(
        self, config: HardeningConfig | None = None, *, keep_pre_hardening_state: bool = False, **settings: Any
    ) -> None:
        self.config = HardeningConfig(**settings) if config is None else dataclasses.replace(config, **settings)
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
            "args": {**self.config.to_dict(), "keep_pre_hardening_state": self.keep_pre_hardening_state},
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
        """False for ``hardening_start=1.0``: λ is learned to the end, nothing is pinned or hardened."""
        return self.config.enabled

    # -- the schedule ------------------------------------------------------------------------
    def start_step_for(self, max_steps: int) -> int:
        return min(int(round(self.config.hardening_start * max_steps)), max(max_steps - 1, 0))

    def end_step_for(self, max_steps: int) -> int:
        """Step (1-based) whose forward first runs at λ*: round(end·T), after the start step, at most T."""
        start_step = self.start_step if self.started else self.start_step_for(max_steps)
        return min(max(int(round(self.config.hardening_end * max_steps)), start_step + 1), max(max_steps, 1))

    def consolidating(self, step: int, max_steps: int) -> bool:
        """True if the forward of step ``step`` (1-based) runs as exact ReLU (after ``hardening_end``)."""
        return self.started and step > self.end_step_for(max_steps)

    def weight(self, step: int, max_steps: int) -> float:
        """Interpolation weight in [0, 1] for the forward of step ``step`` (1-based)."""
        span = max(self.end_step_for(max_steps) - self.start_step, 1)
        p = min(max((step - self.start_step) / span, 0.0), 1.0)
        return p if self.config.hardening_shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * p))

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
            target = torch.full_like(lam, self.config.target_lambda)
            if self.config.relu_target_per_layer and name in rms:
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
        if not self.config.relu_target_per_layer or self.started or self._hooks:
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

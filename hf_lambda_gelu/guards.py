"""Guards every trainer of the package shares: stop at the first non-finite loss, and leave no mixed-precision
wrapper on the trained model (so it computes as its saved checkpoint reloads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .errors import NonFiniteLossError

__all__ = ["GuardedTrainingMixin"]


class GuardedTrainingMixin:
    """Mixed into a ``transformers.Trainer`` subclass (before it in the bases)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Upstream's step, stopped with :class:`~hf_lambda_gelu.errors.NonFiniteLossError` at a NaN/inf loss
        (before the optimizer applies it: upstream would average it away and train on NaN gradients)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                self.state.global_step + 1, self.state.max_steps, float(loss.float().sum()), _non_finite(inputs)
            )
        return loss

    def drop_autocast_wrapper(self) -> None:
        """Restore ``self.model.forward``: accelerate's bf16/fp16 autocast wrapper stays on it after training (and
        after a first evaluation), so the model would keep running in mixed precision while its saved checkpoint
        reloads in its weights' precision (the release gate would compare the two)."""
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)


def _non_finite(inputs: Mapping[str, Any]) -> list[str]:
    """Which floating inputs of a batch hold NaN/inf, and in which rows (e.g. ``"labels, rows [3] of the batch"``)."""
    found = []
    for key, value in inputs.items():
        if not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        bad = ~torch.isfinite(value)
        if bad.any():
            rows = bad.reshape(len(value), -1).any(dim=1).nonzero().flatten().tolist() if value.dim() else []
            found.append(f"{key}, rows {rows} of the batch" if rows else key)
    return found

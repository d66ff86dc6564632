"""Guards every trainer of the package shares: stop at the first non-finite loss, leave no mixed-precision
wrapper on the trained model (so it computes as its saved checkpoint reloads), turn a disk that fills up during
a checkpoint into one clear error with no partial checkpoint left behind, and keep the Hub token out of every
saved ``training_args.bin``."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from .errors import CheckpointDiskFullError, NonFiniteLossError

__all__ = ["GuardedTrainingMixin"]


class GuardedTrainingMixin:
    """Mixed into a ``transformers.Trainer`` subclass (before it in the bases)."""

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """No checkpoint upload, whatever ``hub_strategy`` says: upstream's would upload the folder's
        ``training_args.bin`` written while the token was set, and these trainers publish a release, not checkpoints
        (``LambdaGELUTrainer.push_to_hub``, ``save_twin_release``)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Upstream's step, stopped with :class:`~hf_lambda_gelu.errors.NonFiniteLossError` at a NaN/inf loss
        (before the optimizer applies it: upstream would average it away and train on NaN gradients)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(
                self.state.global_step + 1, self.state.max_steps, float(loss.float().sum()), _non_finite(inputs)
            )
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Upstream's save (also of every checkpoint) with ``args.hub_token`` None meanwhile: upstream pickles
        ``args`` into the folder's ``training_args.bin``; ``push_to_hub`` still gets the token."""
        with _hub_token_hidden(self.args):
            super().save_model(output_dir, _internal_call)

    def _save_checkpoint(self, model, trial) -> None:
        """Upstream's checkpoint save; a full disk raises :class:`~hf_lambda_gelu.errors.CheckpointDiskFullError`
        (naming ``checkpoint-N`` and the free space) after removing the partial folder, which
        ``get_last_checkpoint`` (``resume_from_checkpoint=True``) would otherwise pick and fail to load."""
        try:
            super()._save_checkpoint(model, trial)
        except Exception as err:  # safetensors' SafetensorError is neither an OSError nor a RuntimeError
            run_dir = self._get_output_dir(trial=trial)
            folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            if not _disk_full(err, run_dir):
                raise
            written = _bytes_in(folder)
            shutil.rmtree(folder, ignore_errors=True)
            last = get_last_checkpoint(run_dir)
            free = shutil.disk_usage(run_dir).free
            raise CheckpointDiskFullError(folder, written, free, last, _bytes_in(last) if last else 0) from err

    def drop_autocast_wrapper(self) -> None:
        """Restore ``self.model.forward``: accelerate's bf16/fp16 autocast wrapper stays on it after training (and
        after a first evaluation), so the model would keep running in mixed precision while its saved checkpoint
        reloads in its weights' precision (the release gate would compare the two)."""
        self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)


@contextlib.contextmanager
def _hub_token_hidden(args: TrainingArguments) -> Iterator[None]:
    """``args.hub_token`` is None inside (and restored after, also on an error)."""
    token, args.hub_token = args.hub_token, None
    try:
        yield
    finally:
        args.hub_token = token


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


#: How a full disk shows in an error message that has no errno (safetensors' Rust I/O error).
NO_SPACE_MESSAGES = ("no space left on device", f"os error {errno.ENOSPC})")
#: torch's stream writer drops the errno of a failed write: these mean "a write failed", not why.
STREAM_WRITE_FAILURES = ("basic_ios::clear: iostream error", "PytorchStreamWriter failed writing file")
#: A device with less free space than this after such a failed write is taken to be full.
FULL_DEVICE_BYTES = 1 << 20


def _disk_full(err: BaseException, folder: str) -> bool:
    """Whether ``err`` (or an error it was raised from or while handling) is a write that found the disk full.

    ENOSPC, or its message, is conclusive; torch's errno-less write failures count when ``folder``'s device has
    less than :data:`FULL_DEVICE_BYTES` left (another cause, e.g. an I/O error, keeps its own error).
    """
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    if any(getattr(e, "errno", None) == errno.ENOSPC or _mentions(e, NO_SPACE_MESSAGES) for e in chain):
        return True
    return (
        any(_mentions(e, STREAM_WRITE_FAILURES) for e in chain) and shutil.disk_usage(folder).free < FULL_DEVICE_BYTES
    )


def _mentions(err: BaseException, phrases: tuple[str, ...]) -> bool:
    message = str(err).lower()
    return any(phrase.lower() in message for phrase in phrases)


def _bytes_in(folder: str) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist)."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())

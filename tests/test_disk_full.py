"""A disk that fills up while a checkpoint is written: one clear error naming checkpoint-N, no partial folder left.

Real writes into a small tmpfs (needs root to mount; skipped with the reason otherwise). After ``checkpoint-2`` a
callback fills the device with a ballast file, leaving just enough room for ``checkpoint-4`` to fail in the writer
chosen: safetensors (model.safetensors), torch (optimizer.pt, scheduler.pt). Then the ballast goes and the run
resumes from the last complete checkpoint.
"""

from __future__ import annotations

import errno
import gc
import shutil
import subprocess
from pathlib import Path

import pytest
import transformers
from tiny_data import text_dataset, tiny_bert, training_args
from transformers import TrainerCallback

from hf_lambda_gelu import CheckpointDiskFullError, LambdaGELUError, LambdaGELUTrainer, RelufyArguments, relufy

#: Free bytes left after checkpoint-2 → where checkpoint-4 (about 512 KiB: a 152 KiB model, a 324 KiB optimizer
#: state) runs out of room, and what the writer raises there.
FAILING_WRITER = {
    "safetensors": 40_000,  # SafetensorError "... No space left on device (os error 28)"
    "torch optimizer.pt": 250_000,  # RuntimeError "unexpected pos", raised while handling "basic_ios::clear"
    "torch scheduler.pt": 500_000,  # RuntimeError "basic_ios::clear: iostream error"
}


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (its own device), unmounted after the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip() or proc.returncode}")
    yield mount_point
    gc.collect()  # a failed writer's file, held by the caught error's traceback frames, keeps the mount busy
    if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)  # still held (a failing test's traceback)


class Ballast(TrainerCallback):
    """After the checkpoint of ``after_step``, fill the device with ``path`` up to ``leave`` free bytes."""

    def __init__(self, path: Path, leave: int, after_step: int = 2) -> None:
        self.path, self.leave, self.after_step = path, leave, after_step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.after_step:
            self.path.write_bytes(b"\0" * (shutil.disk_usage(self.path.parent).free - self.leave))


class StepsTaken(TrainerCallback):
    def __init__(self) -> None:
        self.taken: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.taken.append(state.global_step)


def _trainer(out: Path, *callbacks: TrainerCallback, **overrides) -> LambdaGELUTrainer:
    args = training_args(out, save_strategy="steps", save_steps=2, **overrides)
    return LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(), callbacks=list(callbacks))


@pytest.mark.parametrize("writer", sorted(FAILING_WRITER))
def test_full_disk_names_the_checkpoint_removes_it_and_the_run_resumes(small_disk, writer):
    out, ballast = small_disk / "out", small_disk / "ballast"
    trainer = _trainer(out, Ballast(ballast, FAILING_WRITER[writer]))
    with pytest.raises(CheckpointDiskFullError) as caught:
        trainer.train()
    err = caught.value
    message = " ".join(str(err).split())
    assert message.startswith(f"No space left while writing checkpoint-4 in {str(out)!r}: the device holding it has ")
    assert "the last complete one, checkpoint-2 (" in message and "is intact: resume from it" in message
    assert "save_total_limit" in message and "output_dir" in message
    assert isinstance(err, OSError) and isinstance(err, LambdaGELUError) and err.errno == errno.ENOSPC
    assert err.free == shutil.disk_usage(small_disk).free and err.__cause__ is not None  # the writer's own error
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # the partial one is gone

    ballast.unlink()
    steps = StepsTaken()
    resumed = _trainer(out, steps, save_total_limit=1)  # 2 MiB hold two checkpoints of about 512 KiB, not four
    resumed.train(resume_from_checkpoint=True)  # picks checkpoint-2 (a partial checkpoint-4 would fail to load)
    assert steps.taken == [3, 4, 5, 6, 7, 8]
    assert (out / "checkpoint-8" / "trainer_state.json").is_file()


def test_relufy_full_disk_raises_the_same_error(small_disk):
    out, ballast = small_disk / "work", small_disk / "ballast"
    args = RelufyArguments(
        output_dir=str(out), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-3, report_to="none",
        save_strategy="steps", save_steps=2, use_cpu=True, disable_tqdm=True, seed=0,
    )  # fmt: skip
    with pytest.raises(CheckpointDiskFullError, match="No space left while writing checkpoint-4 in "):
        relufy(tiny_bert(), text_dataset(32), args, callbacks=[Ballast(ballast, 40_000)])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


def test_a_failed_write_on_a_disk_with_room_keeps_its_own_error(tmp_path, monkeypatch):
    """torch's errno-less write failure is only called a full disk when the device is in fact (nearly) full."""

    def failing_write(self, output_dir):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", failing_write)
    if shutil.disk_usage(tmp_path).free < 1 << 26:
        pytest.skip("the test folder's device is itself nearly full")
    with pytest.raises(RuntimeError, match="basic_ios") as caught:
        _trainer(tmp_path).train()
    assert not isinstance(caught.value, CheckpointDiskFullError)
    assert (tmp_path / "checkpoint-2" / "model.safetensors").is_file()  # nothing removed on an unknown failure

"""Where a ``relufy`` CLI run trains: a throwaway folder, or a work folder (``--output-dir``) that keeps checkpoints.

With a work folder, the Trainer saves a checkpoint every ``--save-steps`` steps and at the end, keeping the last
one only; rerunning the same command resumes from it (the Trainer restores weights, optimizer, scheduler, RNG
states and the data position, so on CPU the twin is bit-identical to an uninterrupted run's). The work folder
records the command it belongs to (``relufy_command.json``): a different command is refused rather than resumed
from checkpoints that are not its own. The release itself is written only at the end, through the gate.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

from .errors import InvalidSettingError
from .temp_dirs import locked_temp_dir

__all__ = ["COMMAND_FILENAME", "DEFAULT_SAVE_STEPS", "RELUFY_TEMP_PREFIX", "WorkFolder", "work_folder"]

logger = logging.getLogger(__name__)

COMMAND_FILENAME = "relufy_command.json"
#: Prefix of a run's throwaway folder in TMPDIR (stale ones, from killed runs, are removed by the next run).
RELUFY_TEMP_PREFIX = "hf-lambda-gelu-relufy-"
#: Steps between checkpoints of a run with a work folder (the end of the run is always saved).
DEFAULT_SAVE_STEPS = 500


@dataclass
class WorkFolder:
    """Where the Trainer writes, the checkpoint to resume from (None: start afresh) and its save settings."""

    path: str
    resume_from: str | None
    save_settings: dict[str, Any]


@contextlib.contextmanager
def work_folder(output_dir: str | None, command: Mapping[str, Any], save_steps: int) -> Iterator[WorkFolder]:
    """The training folder of a relufy run: a temporary one (``output_dir`` None), or ``output_dir``, kept.

    Args:
        output_dir: the work folder (``--output-dir``), or None for a throwaway one without checkpoints.
        command: what makes two runs the same run (model, data, training settings), JSON-serializable.
        save_steps: steps between checkpoints.

    Raises:
        InvalidSettingError: ``output_dir`` holds checkpoints of a different command.

    >>> with work_folder(None, {}, 500) as work:
    ...     work.resume_from, work.save_settings
    (None, {'save_strategy': 'no'})
    """
    if output_dir is None:
        with locked_temp_dir(RELUFY_TEMP_PREFIX) as path:  # locked: a later run removes it only if we were killed
            yield WorkFolder(path, None, {"save_strategy": "no"})
        return
    folder = Path(output_dir)
    record = folder / COMMAND_FILENAME
    command = json.loads(json.dumps(dict(command)))  # as it reads back
    resume_from = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if resume_from is not None and record.is_file():
        before = json.loads(record.read_text(encoding="utf-8"))
        changed = sorted(k for k in {*before, *command} if before.get(k) != command.get(k))
        if changed:
            diff = ", ".join(f"{k}: {before.get(k)!r} then, {command.get(k)!r} now" for k in changed)
            raise InvalidSettingError(
                "--output-dir",
                str(folder),
                f"it holds checkpoints of another relufy command ({diff}); rerun that command to resume it, or "
                "give a new or empty --output-dir",
            )
    if resume_from is not None:
        logger.warning("Resuming the relufy run from %s.", resume_from)
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(command, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    settings = {"save_strategy": "steps", "save_steps": save_steps, "save_total_limit": 1}
    yield WorkFolder(str(folder), resume_from, settings)

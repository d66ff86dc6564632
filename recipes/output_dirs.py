"""The recipes' output folder, checked before anything is loaded or trained.

A run writes its model, card and results into ``--output_dir``. Three ways that loses work:

- the folder holds files already (an earlier run, someone's notes): same-named files are silently
  overwritten. Refused unless ``--overwrite_output_dir true`` (transformers 5 dropped its own flag; this
  one is the recipes') or the run resumes (``--resume_from_checkpoint``: its own folder, on purpose).
- the folder is the starting checkpoint (or contains it, or lies inside it): the run would overwrite
  the base model. Always refused, whatever the flag says.
- the folder cannot be written (a file in the way, no permission): today that fails after training,
  losing the run. Detected up front by creating (and removing) a probe file where the folder will be.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["OutputDirError", "check_run_output_dir"]

_SHOWN = 5


class OutputDirError(ValueError):
    """``--output_dir`` is unsafe to write to (non-empty, the model folder, or not writable)."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_run_output_dir(
    output_dir: str | os.PathLike, model_name_or_path: str | os.PathLike | None = None, *, overwrite: bool = False
) -> None:
    """Refuse an output folder that would lose work (see the module docstring); creates nothing.

    Args:
        output_dir: the run's ``--output_dir``.
        model_name_or_path: the starting checkpoint (a local folder is compared; a Hub id is ignored).
        overwrite: allow a non-empty folder (``--overwrite_output_dir``).

    Raises:
        OutputDirError: naming the folder, what is wrong and what to pass.

    >>> check_run_output_dir("a-new-folder", "google-bert/bert-base-uncased")
    """
    out = Path(output_dir).expanduser().resolve()
    if model_name_or_path is not None and Path(model_name_or_path).expanduser().exists():
        model_dir = Path(model_name_or_path).expanduser().resolve()
        if out == model_dir or model_dir in out.parents or out in model_dir.parents:
            raise OutputDirError(
                f"--output_dir {str(output_dir)!r} is the model folder {str(model_name_or_path)!r} (or contains it, or "
                "lies inside it): the run would overwrite the checkpoint it starts from. Choose another --output_dir."
            )
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:_SHOWN]) + (
                f" and {len(entries) - _SHOWN} more" if len(entries) > _SHOWN else ""
            )
            raise OutputDirError(
                f"--output_dir {str(output_dir)!r} is not empty (it holds {shown}); the run would overwrite same-named "
                "files. Choose a new folder, or pass --overwrite_output_dir true to write into it anyway."
            )
    parent = _nearest_existing(out)
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{str(parent)!r} is a file")
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise OutputDirError(
            f"--output_dir {str(output_dir)!r} cannot be written ({err}); the run would fail after training. Choose a "
            "writable folder."
        ) from None

"""Temporary folders in TMPDIR that a killed run does not leave behind for good.

A run killed with SIGKILL cannot remove its temporary folder. Each folder made here holds a lock (an
``flock`` on a ``.lock`` file inside it) for as long as its run lives; the next run that makes one with the
same prefix removes, with a warning, those older than its own start that no live run holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked_temp_dir", "remove_stale_temp_dirs"]

logger = logging.getLogger(__name__)

_LOCK = ".lock"


@contextlib.contextmanager
def locked_temp_dir(prefix: str) -> Iterator[str]:
    """A new temporary folder, locked while in use and removed after; stale ones with ``prefix`` are removed first.

    Args:
        prefix: the folder name's prefix, e.g. ``"hf-lambda-gelu-relufy-"``.

    >>> with locked_temp_dir("hf-lambda-gelu-doctest-") as folder:
    ...     os.path.isdir(folder)
    True
    """
    remove_stale_temp_dirs(prefix, time.time())
    folder = tempfile.mkdtemp(prefix=prefix)
    fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_stale_temp_dirs(prefix: str, before: float) -> list[Path]:
    """Remove the folders ``prefix*`` in TMPDIR last changed before ``before`` (a time) that no live run locks.

    Returns:
        The folders removed (each with a warning).
    """
    removed = []
    for path in sorted(Path(tempfile.gettempdir()).glob(f"{prefix}*")):
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_mtime >= before or _held(path):
                continue
            shutil.rmtree(path)
        except OSError:
            continue  # another user's, or removed meanwhile
        logger.warning("Removed %s, a temporary folder left by an earlier run that was killed.", path)
        removed.append(path)
    return removed


def _held(folder: Path) -> bool:
    """Whether a live run holds ``folder``'s lock (a folder without one was left before it was locked)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

"""How a release replaces the content of its folder: one writer at a time, old or new release at every instant.

:func:`hf_lambda_gelu.release.folder.save_release` writes a release into a staging folder *inside* the release
folder (so every later move is a rename within one filesystem, also when the folder is a mount point:
a Docker volume, a PVC, a tmpfs), checks it there, then commits it here.

Decisions:
- The commit point is one atomic rename: a journal (``.hf-lambda-gelu-commit.json``) naming the staging
  folder and the previous release's files that the new one does not have. Before it exists, the folder
  holds the old release untouched (the staging folder is a leftover, removed by the next save with a
  warning). Once it exists, the new release is the folder's release: the journal's moves are replayed
  (idempotent: a file already moved is skipped) by whoever next takes the lock, and only then are the
  old release's stale files removed and the journal deleted. A save killed (SIGKILL) at any instant
  therefore leaves either the old release or the new one, once the journal is replayed
  (:func:`hf_lambda_gelu.release.folder.check_release_dir`, ``save_release`` and ``check_output_dir`` replay it).
- One writer at a time: an exclusive, non-blocking ``flock`` on ``.hf-lambda-gelu.lock`` in the folder.
  A second process is refused with :class:`~hf_lambda_gelu.errors.ReleaseDirBusyError` (waiting would
  silently replace the first writer's release). The lock dies with its process, so a killed writer
  never blocks the folder; the lock file is removed when the lock is released.
- Durability against a process kill, not a power cut: nothing is fsync'ed.
- Everything of this module in a release folder is hidden and starts with ``.hf-lambda-gelu``; such
  entries are never release files (:func:`is_internal`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import ReleaseDirBusyError

__all__ = [
    "INTERNAL_PREFIX",
    "STAGING_PREFIX",
    "commit",
    "is_internal",
    "locked",
    "needs_recovery",
    "recover",
    "replace_file",
]

logger = logging.getLogger(__name__)

INTERNAL_PREFIX = ".hf-lambda-gelu"
_LOCK = f"{INTERNAL_PREFIX}.lock"
_JOURNAL = f"{INTERNAL_PREFIX}-commit.json"
#: Prefix of the staging folders created inside a release folder.
STAGING_PREFIX = f"{INTERNAL_PREFIX}-staging-"


def is_internal(relative_path: str) -> bool:
    """True for the lock, journal and staging entries of this module, and anything below them or below another
    folder's (paths relative to the release folder): any part of the path starts with ``.hf-lambda-gelu``.

    >>> is_internal(".hf-lambda-gelu.lock"), is_internal("1_Pooling/twin/.hf-lambda-gelu.lock"), is_internal("a/b")
    (True, True, False)
    """
    return any(part.startswith(INTERNAL_PREFIX) for part in relative_path.split("/"))


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock on the release in ``folder`` (an existing folder).

    Raises:
        ReleaseDirBusyError: another process holds it (it is saving into the folder right now).
    """
    path = folder / _LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReleaseDirBusyError(folder) from None
        try:  # the previous holder removes the file when done: lock the file that is there, not a removed one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def needs_recovery(folder: Path, *, leftovers: bool = True) -> bool:
    """True if ``folder`` holds a committed save to finish (or, with ``leftovers``, staging folders of a killed one)."""
    return (folder / _JOURNAL).is_file() or (leftovers and any(folder.glob(f"{STAGING_PREFIX}*")))


def _legacy_leftovers(folder: Path) -> list[Path]:
    """Staging folders that earlier versions, staging next to the folder, left in its parent when killed."""
    try:
        return [p for p in folder.parent.glob(f".{folder.name}.staging-*") if p.is_dir()]
    except OSError:
        return []


def recover(folder: Path) -> None:
    """Finish a committed save (replay its journal), then remove staging leftovers of killed saves, saying so.

    Call it holding :func:`locked` (no other writer can be between its steps).
    """
    if (folder / _JOURNAL).is_file():
        logger.warning("Finishing a save into %s that was interrupted after its commit point.", folder)
        _replay(folder)
    for leftover in [*folder.glob(f"{STAGING_PREFIX}*"), *_legacy_leftovers(folder)]:
        try:
            shutil.rmtree(leftover)
        except OSError as err:
            logger.warning("Could not remove %s, left by an interrupted save (%s); remove it by hand.", leftover, err)
        else:
            logger.warning("Removed %s, left by an interrupted save into %s.", leftover, folder)


def replace_file(folder: Path, name: str, text: str) -> None:
    """Write ``folder / name`` atomically (a reader sees the old content or the new, never a part)."""
    pending = folder / f"{INTERNAL_PREFIX}-{name}.tmp"
    pending.write_text(text, encoding="utf-8")
    os.replace(pending, folder / name)


def commit(folder: Path, staging: Path, files: list[str], manifest_name: str, previous: list[str]) -> None:
    """Move the release staged in ``staging`` (inside ``folder``) into ``folder``, replacing the previous one.

    Args:
        folder: the release folder (held with :func:`locked`).
        staging: the staging folder inside it, holding ``files`` and the manifest.
        files: the new release's files (relative paths), manifest excluded.
        manifest_name: the manifest's file name (moved last).
        previous: the previous release's files (manifest included): those the new one lacks are removed.
    """
    stale = sorted(set(previous) - {*files, manifest_name})
    plan = {"staging": staging.name, "files": [*files, manifest_name], "remove": stale}
    pending = staging / _JOURNAL
    pending.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    os.replace(pending, folder / _JOURNAL)  # the commit point
    _replay(folder)


def _replay(folder: Path) -> None:
    journal = folder / _JOURNAL
    plan = json.loads(journal.read_text(encoding="utf-8"))
    staging = folder / plan["staging"]
    for name in plan["files"]:  # in order: the manifest last
        source = staging / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, folder / name)
    for name in plan["remove"]:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    journal.unlink()

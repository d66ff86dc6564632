"""The demos' output folder, checked before anything is loaded or trained.

A demo writes a release (:func:`~hf_lambda_gelu.release.save_release`) and ``all_results.json``, which
names the demo (``"demo": ...``), into ``--output_dir``. The folder may be new or empty, or hold an earlier
run of the same demo: its release files (the manifest lists them), ``all_results.json`` naming this demo,
the trainer's reports and checkpoints, the demo's caches. Anything else (someone's ``README.md``, the
release of the other demo) is refused unless ``--overwrite_output_dir``: it would be replaced.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import OutputDirNotEmptyError, ReleaseDirNotEmptyError
from .release import PROFILE_JSON_FILENAME, PROFILE_PLOT_FILENAME, REPORT_FILENAME, check_output_dir

__all__ = ["DEMO_KEY", "RESULTS_FILENAME", "check_demo_output_dir", "results_file"]

RESULTS_FILENAME = "all_results.json"
#: The key of ``all_results.json`` that names the demo which wrote the folder.
DEMO_KEY = "demo"
#: What a run writes next to the release: results, the trainer's reports and checkpoints.
_RUN_FILES = (RESULTS_FILENAME, REPORT_FILENAME, PROFILE_PLOT_FILENAME, PROFILE_JSON_FILENAME, "checkpoint-*")
_SHOWN = 5


def _demo_of(folder: Path) -> str | None:
    try:
        results = json.loads((folder / RESULTS_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results.get(DEMO_KEY) if isinstance(results, dict) else None


def check_demo_output_dir(
    output_dir: str | os.PathLike, demo: str, *, caches: Sequence[str] = (), overwrite: bool = False
) -> None:
    """Refuse an ``output_dir`` that holds anything but an earlier run of ``demo`` (module docstring).

    Args:
        output_dir: the demo's ``--output_dir``.
        demo: the demo's name, as its ``all_results.json`` records it.
        caches: folders of the demo's own it may find there (reused, e.g. a pretrained checkpoint).
        overwrite: ``--overwrite_output_dir``: accept any folder.

    Raises:
        OutputDirNotEmptyError: naming the files in the way (or the other demo) and the flag.

    >>> check_demo_output_dir("a-new-folder", "minilm-vader")
    """
    folder = Path(output_dir)
    names = os.listdir(folder) if folder.is_dir() else []
    if overwrite or not names:
        return
    try:
        check_output_dir(folder)  # the files of an earlier release are the demo's own
        foreign: list[str] = []
    except ReleaseDirNotEmptyError as err:
        foreign = err.files
    others = sorted(
        {name.split("/")[0] for name in foreign if not _matches(name.split("/")[0], (*_RUN_FILES, *caches))}
    )
    flag = "--overwrite_output_dir"
    if others:
        shown = ", ".join(others[:_SHOWN]) + (f" and {len(others) - _SHOWN} more" if len(others) > _SHOWN else "")
        raise OutputDirNotEmptyError(folder, f"holds {shown}, not an earlier run of this demo", flag)
    earlier = _demo_of(folder)
    if earlier != demo and not all(_matches(name, caches) for name in names):
        what = (
            f"the output of another demo ({earlier!r})" if earlier else f"no {RESULTS_FILENAME} of this demo ({demo!r})"
        )
        raise OutputDirNotEmptyError(folder, f"holds {what}", flag)


def results_file(results: dict[str, Any]) -> Callable[[Path], None]:
    """``save_release``'s ``add_files``: ``all_results.json`` written into the release, so its manifest lists it.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> results_file({"demo": "minilm-vader"})(folder)
    >>> _demo_of(folder)
    'minilm-vader'
    """

    def write(folder: Path) -> None:
        (folder / RESULTS_FILENAME).write_text(json.dumps(results, indent=4, sort_keys=True) + "\n", encoding="utf-8")

    return write


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

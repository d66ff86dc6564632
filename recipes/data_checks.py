"""Data problems of the recipes, said in one line that names the file, the line and the fix.

``datasets`` reports a bad local file as ``DatasetGenerationError: An error occurred while generating
the dataset`` (empty or header-only csv, malformed jsonl), ``Instruction "train" corresponds to no
data!`` (an empty folder) or a JSON parse position, never naming the file. When loading fails,
:func:`diagnose_data_files` reads the files itself to find the first problem (only then: a good
file is read once, by ``datasets``); :func:`check_splits_not_empty` catches splits that load with
no examples; :func:`check_labels_seen_in_training` catches classes that only evaluation data has.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "DataFileError",
    "UnseenLabelError",
    "check_labels_seen_in_training",
    "check_splits_not_empty",
    "diagnose_data_files",
]


class DataFileError(ValueError):
    """A local data file (or folder) a recipe was given cannot be used; names the file, the line, the fix."""

    def __init__(self, path: str, problem: str, fix: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{self.path!r}" + (f", line {line}" if line is not None else "")
        super().__init__(f"Data file {where}: {problem}. {fix}")


class UnseenLabelError(ValueError):
    """Labels that appear in evaluation data but never in the training data (classes never trained)."""

    def __init__(self, labels: list, where: str, column: str, train: str | None = None) -> None:
        self.labels = labels
        train = f"the training data ({train})" if train else "the training data"
        super().__init__(
            f"Labels {labels} of column {column!r} appear in {where} but not in {train}: the model would get "
            "classes it never trains on. Fix those labels, or add training examples for them."
        )


_FIX = {
    "csv": "Give a csv file with a header row and at least one example row.",
    "json": "Give JSON Lines: one JSON object per line (or one JSON array of objects).",
    "text": "Give a text file with at least one non-empty line.",
    "folder": "Give a folder with one subfolder per class holding the images (imagefolder layout).",
}


def _kind(path: Path, builder: str) -> str:
    if path.is_dir():
        return "folder"
    return builder if builder in _FIX else "text"


def _csv_problem(path: Path) -> tuple[str, int | None] | None:
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or not any(cell.strip() for cell in header):
            return "the header row is missing (the first line is empty)", 1
        examples = 0
        for row in rows:
            if row and len(row) != len(header):
                return f"{len(row)} fields where the header has {len(header)} ({header})", rows.line_num
            examples += bool(row)
        if not examples:
            return "a header row but no example rows", None
    return None


def _json_problem(path: Path) -> tuple[str, int | None] | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list | dict):
        return None if whole else ("no examples (an empty JSON document)", None)
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return f"invalid JSON ({err.msg} at column {err.colno})", number
        if not isinstance(value, dict):
            return f"a JSON {type(value).__name__}, not an object", number
        seen += 1
    return None if seen else ("no JSON objects", None)


def _folder_problem(path: Path) -> tuple[str, int | None] | None:
    if not any(files for _, _, files in os.walk(path)):
        return "the folder has no files", None
    return None


def _problem(path: Path, kind: str) -> tuple[str, int | None] | None:
    if not path.exists():
        return "no such file or folder", None
    if kind == "folder":
        return _folder_problem(path)
    if path.stat().st_size == 0:
        return "the file is empty", None
    if kind == "csv":
        return _csv_problem(path)
    if kind == "json":
        return _json_problem(path)
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        return "the file has no text", None
    return None


def diagnose_data_files(data_files: Mapping[str, str], builder: str, error: BaseException) -> DataFileError:
    """The first problem found in ``data_files`` (split → path) after ``datasets`` failed with ``error``.

    Args:
        data_files: the local files or folders given to ``load_dataset``.
        builder: the ``datasets`` builder used (``"csv"``, ``"json"``, ``"text"``, ``"imagefolder"``).
        error: what ``load_dataset`` raised (quoted when no file shows a problem of its own).

    Returns:
        A :class:`DataFileError` to raise (``raise ... from error``).

    >>> import tempfile, pathlib
    >>> empty = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
    >>> _ = empty.write_text("")
    >>> str(diagnose_data_files({"train": str(empty)}, "csv", RuntimeError())).endswith("at least one example row.")
    True
    """
    for path in data_files.values():
        kind = _kind(Path(path), builder)
        found = _problem(Path(path), kind)
        if found is not None:
            problem, line = found
            return DataFileError(path, problem, _FIX[kind], line=line)
    paths = ", ".join(repr(str(p)) for p in data_files.values())
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return DataFileError(paths, f"datasets' {builder} loader failed ({reason})", "Check the file format.")


def check_splits_not_empty(raw: Mapping, data_files: Mapping[str, str] | None = None) -> None:
    """Raise :class:`DataFileError` for a split with no examples, naming its file when local.

    >>> from datasets import Dataset, DatasetDict
    >>> check_splits_not_empty(DatasetDict(train=Dataset.from_dict({"a": [1]})))
    """
    for split, dataset in raw.items():
        if len(dataset) == 0:
            path = (data_files or {}).get(split, f"the {split} split")
            raise DataFileError(path, f"the {split} split has no examples", "Give at least one example.")


def check_labels_seen_in_training(
    raw: Mapping, label_column: str, names: list[str] | None = None, sources: Mapping[str, str] | None = None
) -> None:
    """Raise :class:`UnseenLabelError` when a non-train split has labels the train split lacks.

    Args:
        raw: split → dataset; nothing is checked without a ``"train"`` split.
        label_column: the label column.
        names: class names when the column holds ``ClassLabel`` ids (listed by name).
        sources: split → what it was read from, named in the error.
    """
    if "train" not in raw:
        return
    seen = set(raw["train"][label_column])
    sources = sources or {}
    for split, dataset in raw.items():
        unseen = sorted(set(dataset[label_column]) - seen, key=str)
        if split != "train" and unseen:
            shown = [names[v] if names is not None else v for v in unseen]
            raise UnseenLabelError(shown, sources.get(split, f"the {split} data"), label_column, sources.get("train"))

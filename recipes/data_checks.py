"""Data problems of the recipes, said in one line that names the file, the line and the fix.

``datasets`` reports a bad local file as ``DatasetGenerationError: An error occurred while generating
the dataset`` (empty or header-only csv, malformed jsonl), ``Instruction "train" corresponds to no
data!`` (an empty folder) or a JSON parse position, never naming the file. When loading fails,
:func:`diagnose_data_files` reads the files itself to find the first problem (only then: a good
file is read once, by ``datasets``); :func:`check_splits_not_empty` catches splits that load with
no examples; :func:`check_labels_seen_in_training` catches classes that only evaluation data has;
:func:`check_cells` catches the cells that would otherwise end in a ``TypeError`` inside tokenization or
label sorting: an empty label or text cell, a label of another type than the others (an int among strings).
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "DataCellError",
    "DataFileError",
    "UnseenLabelError",
    "check_cells",
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


class DataCellError(ValueError):
    """One example's cell cannot be used (empty label or text, a label of another type than the others);
    names the file and the line (a Hub data set: the split and the example number) and the fix."""

    def __init__(self, source: str, example: int, line: int | None, problem: str, fix: str) -> None:
        self.source, self.example, self.line, self.problem = source, example, line, problem
        where = f"Data file {source!r}, line {line}" if line is not None else f"Data: {source}, example {example}"
        super().__init__(f"{where}: {problem}. {fix}")


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
    first_types: dict[str, tuple[type, int]] = {}  # field → type of its first value, and that line
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return f"invalid JSON ({err.msg} at column {err.colno})", number
        if not isinstance(value, dict):
            return f"a JSON {type(value).__name__}, not an object", number
        for key, item in value.items():
            if item is None:
                continue
            first, at = first_types.setdefault(key, (type(item), number))
            if first is not type(item) and not {first, type(item)} <= {int, float}:  # ints and floats mix
                return (
                    f"the {key!r} value {item!r} is {_type_name(type(item))} where line {at} has "
                    f"{_type_name(first)} (write every value of a field the same way, e.g. all labels as strings: "
                    '"1")'
                ), number
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


def _example_line(path: str | None, index: int) -> int | None:
    """The line on which example ``index`` (0-based) starts in a local csv or JSON Lines file, else None
    (a Hub data set, one JSON array document)."""
    if path is None or not Path(path).is_file() or Path(path).suffix.lower() not in (".csv", ".json", ".jsonl"):
        return None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        if Path(path).suffix.lower() == ".csv":
            rows = csv.reader(f)
            next(rows, None)  # the header
            start, seen = rows.line_num + 1, 0
            for row in rows:
                if row:  # blank lines hold no example (datasets skips them)
                    if seen == index:
                        return start
                    seen += 1
                start = rows.line_num + 1
            return None
        text = f.read()
    try:
        if isinstance(json.loads(text), list):
            return None  # one JSON array: its examples have no line of their own
    except json.JSONDecodeError:
        pass  # JSON Lines
    numbered = [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return numbered[index] if index < len(numbered) else None


#: How a cell's type is named: (one, several).
_TYPE_NAMES = {
    bool: ("a bool", "bools"),
    int: ("an int", "ints"),
    float: ("a float", "floats"),
    str: ("a string", "strings"),
}


def _type_name(value_type: type, plural: bool = False) -> str:
    return _TYPE_NAMES.get(value_type, (f"a {value_type.__name__}", f"{value_type.__name__}s"))[plural]


def _first_bad_text(dataset, column: str) -> int | None:
    """Index of the first example whose text cell is empty or not a string (None if all are strings)."""
    if getattr(dataset.features[column], "dtype", None) in ("string", "large_string") and dataset._indices is None:
        import pyarrow.compute as pc  # a string column: only empty cells (nulls) can be wrong; no Python copy

        first = pc.index(dataset.data.column(column).is_null(), True).as_py()
        return None if first < 0 else first
    return next((i for i, value in enumerate(dataset[column]) if not isinstance(value, str)), None)


def check_cells(
    raw: Mapping,
    *,
    text_columns: Sequence[str],
    label_column: str | None = None,
    files: Mapping[str, str | None] | None = None,
    sources: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`DataCellError` for the first example with an empty text or label cell, or a label of
    another type than most labels (``1`` among ``"pos"``/``"neg"``), naming the file and the line.

    Args:
        raw: split → dataset, as loaded (before any split or selection: indices are file order).
        text_columns: the text column(s).
        label_column: the label column (``ClassLabel`` columns hold ids: not checked).
        files: split → the local file it was loaded from (lines are counted there).
        sources: split → what it was read from (named when there is no line, e.g. a Hub data set).

    >>> from datasets import Dataset, DatasetDict
    >>> check_cells(DatasetDict(train=Dataset.from_dict({"text": ["a"], "label": ["pos"]})), text_columns=["text"])
    """
    files, sources = files or {}, sources or {}

    def error(split: str, index: int, problem: str, fix: str) -> DataCellError:
        line = _example_line(files.get(split), index)
        source = files[split] if line is not None else sources.get(split, f"the {split} split")
        return DataCellError(source, index + 1, line, problem, fix)

    for split, dataset in raw.items():
        for column in text_columns:
            index = _first_bad_text(dataset, column)
            if index is not None:
                value = dataset[index][column]
                what = "empty" if value is None else f"{_type_name(type(value))} ({value!r}), not text"
                raise error(split, index, f"the text cell (column {column!r}) is {what}", "Give every example its "
                            "text, or remove the row")  # fmt: skip
    from datasets import ClassLabel

    if label_column is None or isinstance(next(iter(raw.values())).features[label_column], ClassLabel):
        return
    labels = {split: dataset[label_column] for split, dataset in raw.items()}
    for split, values in labels.items():
        index = next((i for i, value in enumerate(values) if value is None or str(value).strip() == ""), None)
        if index is not None:
            raise error(split, index, f"the label cell (column {label_column!r}) is empty", "Give every example a "
                        "label, or remove the row")  # fmt: skip
    types = Counter(type(value) for values in labels.values() for value in values)
    common = types.most_common(1)[0][0] if types else None
    for split, values in labels.items():
        index = next((i for i, value in enumerate(values) if type(value) is not common), None)
        if index is not None:
            value = values[index]
            raise error(
                split,
                index,
                f"the label {value!r} is {_type_name(type(value))} among {_type_name(common, plural=True)} (column "
                f"{label_column!r})",
                'Write every label of the column the same way: all strings (e.g. "1") or all integers',
            )

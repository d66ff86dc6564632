"""Inputs of ``hf-lambda-gelu relufy``: data files read as examples, and the sentence-transformers folder around a model.

Data: plain text (one example a line), CSV/TSV or JSON lines (a named column), or an image folder
(images anywhere below it; with a label column asked for, the first sub-folder is the label). A
sentence-transformers folder (``modules.json``) is served through its pooling module: its mode is read
from the pooling ``config.json`` and its files are carried into the release, so the twin loads with
``SentenceTransformer(release)``.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataFileError, InvalidInputError, ModelFolderError, UnsupportedPoolingError
from .fidelity import Pooling
from .release.commit import is_internal

__all__ = [
    "IMAGE_SUFFIXES",
    "Examples",
    "label_ids",
    "load_pooling",
    "model_file",
    "read_examples",
    "sentence_transformers_files",
    "text_rows",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_TEXT_SUFFIXES = {".txt": None, ".csv": ",", ".tsv": "\t", ".jsonl": "json", ".json": "json"}
_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
_POOLING_TYPE = "sentence_transformers.models.Pooling"


@dataclass
class Examples:
    """What a data file holds: texts or image paths, and labels when a label column was asked for."""

    inputs: list[Any]
    labels: list[Any] | None
    is_image: bool = False

    def __len__(self) -> int:
        return len(self.inputs)


def _json_values(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, value) of JSON lines, read a line at a time; a ``.json`` file may also be one JSON array (then read
    whole: (item number, value))."""
    if path.suffix.lower() == ".json":
        text = path.read_text(encoding="utf-8-sig")
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None  # JSON lines in a .json file
        if isinstance(whole, list):
            yield from enumerate(whole, 1)
            return
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\n"))  # its position in the line, as the line reads
            except ValueError as err:
                raise DataFileError(
                    path, f"line {number} is not JSON ({err})", "write one JSON object a line"
                ) from None
            yield number, value


def _raw_rows(path: Path, kind: str | None, text_column: str) -> Iterator[tuple[int, Any]]:
    """(line, row) of a text file, a line at a time: plain text (each non-blank line, stripped), CSV/TSV (the csv
    module: quoted line breaks kept) or JSON; a UTF-8 BOM dropped."""
    if kind is None:
        with path.open(encoding="utf-8-sig") as f:
            number = 0
            for physical in f:
                for line in physical.splitlines():  # the breaks str.splitlines knows (\f, \u2028, ...) count too
                    number += 1
                    if line.strip():
                        yield number, {text_column: line.strip()}
    elif kind == "json":
        for number, row in _json_values(path):
            if not isinstance(row, dict):
                raise DataFileError(
                    path,
                    f"line {number} is {json.dumps(row)[:40]}, not a JSON object",
                    'write one {"text": ...} object a line',
                )
            yield number, row
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=kind)
            for row in reader:
                yield reader.line_num, row


def _checked_file(path: Path, label_column: str | None) -> str | None:
    """The kind of a data file (None: plain text; ``","``/``"\\t"``: CSV/TSV; ``"json"``), checked before reading."""
    if not path.is_file():
        raise DataFileError(path, "it does not exist", "check the path")
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES:
        raise DataFileError(path, f"unknown file type {suffix!r}", "use .txt, .csv, .tsv, .jsonl or an image folder")
    kind = _TEXT_SUFFIXES[suffix]
    if kind is None and label_column:
        raise DataFileError(path, "a .txt file has no label column", "use a .csv or .jsonl file for labels")
    return kind


def text_rows(
    path: str | Path, *, text_column: str = "text", label_column: str | None = None
) -> Iterator[tuple[int, str, Any]]:
    """``(line, text, label)`` of each example of a text data file, read and checked a line at a time.

    The file is never held whole (except a ``.json`` file that is one JSON array): a corpus of any size streams
    through. ``label`` is None without ``label_column``.

    Args:
        path: ``.txt`` (one example a line), ``.csv``/``.tsv``/``.jsonl``/``.json`` (columns).
        text_column: the column with the text (CSV/JSONL).
        label_column: also read labels from this column.

    Raises:
        DataFileError: missing, unreadable, empty, a missing column, text that is not a string or an empty cell
            (the file, line and fix), raised when the reader reaches it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("text,label\\nthe cat,pos\\n")
    >>> list(text_rows(p, label_column="label"))
    [(2, 'the cat', 'pos')]
    """
    path = Path(path)
    kind = _checked_file(path, label_column)
    count = 0
    try:
        for number, row in _raw_rows(path, kind, text_column):
            for column in (text_column, label_column):
                if column and column not in row:
                    columns = sorted(str(name) for name in row)
                    raise DataFileError(path, f"no column {column!r} (it has {columns})", "name it with --text-column")
            text = row[text_column]
            if text is not None and not isinstance(text, str):
                raise DataFileError(
                    path,
                    f"line {number}: {text_column!r} is {json.dumps(text)[:40]}, not a string",
                    "give the text as a string",
                )
            if text is None or not text.strip():
                raise DataFileError(path, f"line {number}: empty {text_column!r} cell", "fill or remove that line")
            label = row[label_column] if label_column else None
            if label_column and (label is None or str(label).strip() == ""):
                raise DataFileError(path, f"line {number}: empty {label_column!r} cell", "fill or remove that line")
            count += 1
            yield number, text, label
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataFileError(path, f"it cannot be read ({err})", "give a UTF-8 text file") from None
    if not count:
        raise DataFileError(path, "it holds no examples", "give a file with at least one example")


def read_examples(path: str | Path, *, text_column: str = "text", label_column: str | None = None) -> Examples:
    """Read one data file (or image folder) into :class:`Examples`, held in memory (a large text corpus:
    :func:`hf_lambda_gelu.relufy_corpus.read_corpus`).

    Args:
        path: ``.txt`` (one example a line), ``.csv``/``.tsv``/``.jsonl`` (columns), or a folder of images.
        text_column: the column with the text (CSV/JSONL).
        label_column: also read labels from this column (an image folder: the first sub-folder's name).

    Raises:
        DataFileError: missing, unreadable, empty, a missing column or an empty cell (the file, line and fix).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = p.write_text("a fine day\\n\\nrain again\\n")
    >>> read_examples(p).inputs
    ['a fine day', 'rain again']
    """
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataFileError(path, f"the folder has no images ({', '.join(IMAGE_SUFFIXES)})", "give an image folder")
        labels = [p.relative_to(path).parts[0] if len(p.relative_to(path).parts) > 1 else None for p in images]
        if label_column and None in labels:
            raise DataFileError(path, "an image lies outside a label sub-folder", "put each image in LABEL/ folders")
        return Examples([str(p) for p in images], labels if label_column else None, is_image=True)
    rows = list(text_rows(path, text_column=text_column, label_column=label_column))
    return Examples([text for _, text, _ in rows], [label for *_, label in rows] if label_column else None)


def label_ids(labels: list[Any], config: Any) -> list[int]:
    """Labels as read from a data file (names or ids) → the model's label ids (``relufy``, ``reluize --eval-file``).

    Raises:
        InvalidInputError: a name the model does not know (``config.label2id``), an id out of range, or a label
            that is neither (``1.7``, ``true``, ``[1]``).

    >>> from transformers import BertConfig
    >>> label_ids(["pos", "0", 1], BertConfig(id2label={0: "neg", 1: "pos"}))
    [1, 0, 1]
    """
    id2label = getattr(config, "id2label", None) or {}
    label2id = getattr(config, "label2id", None) or {name: i for i, name in id2label.items()}
    label2id = {str(k): int(v) for k, v in label2id.items()}
    num_labels = int(getattr(config, "num_labels", 0) or len(label2id))
    ids = []
    for label in labels:
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if label not in label2id:
                raise InvalidInputError(
                    f"Label {label!r} is not one of the model's labels {sorted(label2id)} (config.label2id)."
                )
            ids.append(label2id[label])
        elif _is_id(label):
            ids.append(int(label))
        else:
            raise InvalidInputError(
                f"Label {label!r} is neither a label name nor an integer id: give the model's label names "
                f"{sorted(label2id)} or ids 0..{num_labels - 1}."
            )
    bad = sorted({i for i in ids if not 0 <= i < num_labels})
    if bad:
        raise InvalidInputError(f"Label ids {bad} are out of range for a model with {num_labels} labels.")
    return ids


def _is_id(label: Any) -> bool:
    """An integer id: ``"1"``, ``1`` or ``1.0`` (a CSV or JSON reader's); not ``true``, ``1.7`` or ``[1]``."""
    if isinstance(label, float):
        return label.is_integer()
    return isinstance(label, str) or (isinstance(label, int) and not isinstance(label, bool))


def _read_json(path: Path, what: type) -> Any:
    """A JSON file of a model folder, which must hold a ``what`` (list or dict)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelFolderError(path, f"it cannot be read as JSON ({err})", "fix or remove the file") from None
    if not isinstance(value, what):
        raise ModelFolderError(path, f"it holds a {type(value).__name__}, not a {what.__name__}", "fix the file")
    return value


def _roots(model_dir: Path) -> tuple[Path, ...]:
    """Where a model folder's files may really lie: the folder (and, for a Hub cache snapshot, its repo's blobs)."""
    real = model_dir.resolve()
    return (real, real.parent.parent / "blobs") if real.parent.name == "snapshots" else (real,)


def model_file(model_dir: Path, name: str, entry: str) -> Path:
    """``model_dir / name``, refused unless it stays inside ``model_dir``.

    Args:
        model_dir: the model folder.
        name: a relative path read from a file of the folder (e.g. a ``modules.json`` entry's ``path``).
        entry: what named it, for the error (``"modules.json entry '1' (path '../x')"``).

    Raises:
        ModelFolderError: an absolute path, a ``..`` part, the folder itself, the package's hidden files
            (``.hf-lambda-gelu*``), or a link that leads out of the folder.

    >>> model_file(Path("model"), "1_Pooling/config.json", "modules.json").as_posix()
    'model/1_Pooling/config.json'
    """
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or parts == (".",) or is_internal("/".join(parts)):
        problem = f"{entry} names {name!r}, which is not a sub-folder or file of the model folder"
    elif not any(p.is_relative_to(r) for r in _roots(model_dir) for p in [(model_dir / name).resolve()]):
        problem = f"{entry} names {name!r}, which links out of the model folder"
    else:
        return model_dir / name
    raise ModelFolderError(model_dir, problem, "a model folder's files must lie inside it: fix or remove the entry")


def _modules(model_dir: Path) -> list[tuple[str, dict[str, Any]]] | None:
    """The modules of a sentence-transformers folder, each with its checked sub-folder (``""``: the transformer)."""
    path = model_dir / "modules.json"
    if not path.is_file():
        return None
    modules = []
    for module in _read_json(path, list):
        folder = module.get("path", "") if isinstance(module, dict) else None
        if not isinstance(folder, str):
            raise ModelFolderError(path, f"entry {module!r} has no string 'path'", "fix the file")
        entry = f"modules.json entry {module.get('name', module.get('idx'))!r}"
        modules.append(
            (model_file(model_dir, folder, entry).relative_to(model_dir).as_posix() if folder else "", module)
        )
    return modules


def load_pooling(model_dir: str | Path) -> Pooling | None:
    """The pooling of a sentence-transformers folder (None when ``model_dir`` is not one).

    Raises:
        UnsupportedPoolingError: a pooling mode other than exactly one of mean / cls / max.
        ModelFolderError: ``modules.json`` or the pooling ``config.json`` is not valid JSON, or a module's path
            leads out of the folder.
    """
    model_dir = Path(model_dir)
    modules = _modules(model_dir)
    if modules is None:
        return None
    pooling = [folder for folder, m in modules if m.get("type") == _POOLING_TYPE]
    if not pooling:
        raise UnsupportedPoolingError(model_dir, f"modules.json has no {_POOLING_TYPE} module")
    config_path = model_file(model_dir, f"{pooling[0]}/config.json", "the pooling module")
    config = _read_json(config_path, dict) if config_path.is_file() else {}
    on = sorted(key for key, value in config.items() if key.startswith("pooling_mode") and value is True)
    if len(on) != 1 or on[0] not in _POOLING_MODES:
        raise UnsupportedPoolingError(model_dir, f"pooling {on or 'none'} in {config_path}")
    return Pooling(_POOLING_MODES[on[0]], source=str(config_path.relative_to(model_dir)))


def sentence_transformers_files(model_dir: str | Path, release_dir: str | Path) -> list[str]:
    """Copy a sentence-transformers folder's own files (``modules.json``, module folders, configs) into a release.

    The transformer module (path ``""``) is the release's model itself; every other module folder and
    the top-level sentence-transformers configs are copied. Every file read must lie inside ``model_dir``
    and every file written inside ``release_dir``, and none may replace a file the release already has.
    Returns the copied files, relative to ``release_dir`` (for
    :func:`hf_lambda_gelu.release.folder.add_release_files`); ``[]`` for a plain folder.

    Raises:
        ModelFolderError: a module's path or one of its files leads out of ``model_dir``, or a file would
            replace one of the release's own.
    """
    model_dir, release_dir = Path(model_dir), Path(release_dir)
    modules = _modules(model_dir)
    if modules is None:
        return []
    names = ["modules.json"] + [
        n for n in ("sentence_bert_config.json", "config_sentence_transformers.json") if (model_dir / n).is_file()
    ]
    for folder, _ in modules:
        if folder and (model_dir / folder).is_dir():
            found = sorted(p.relative_to(model_dir).as_posix() for p in (model_dir / folder).rglob("*") if p.is_file())
            names += [name for name in found if not is_internal(name)]  # never a release's lock or staging
    for name in names:
        source = model_file(model_dir, name, f"{name!r}")
        target = release_dir / name
        if target.exists():
            raise ModelFolderError(
                model_dir / name, f"copying it would replace the release's own {name!r}", "rename that module folder"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return names

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataFileError, InvalidInputError, UnsupportedPoolingError
from .fidelity import Pooling

__all__ = ["IMAGE_SUFFIXES", "Examples", "label_ids", "load_pooling", "read_examples", "sentence_transformers_files"]

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


def _rows(path: Path, kind: str | None) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if kind == "json":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as err:
                    raise DataFileError(
                        path, f"line {number} is not JSON ({err})", "write one JSON object a line"
                    ) from None
        return rows
    return list(csv.DictReader(text.splitlines(), delimiter=kind))


def read_examples(path: str | Path, *, text_column: str = "text", label_column: str | None = None) -> Examples:
    """Read one data file (or image folder) into :class:`Examples`.

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
    if not path.is_file():
        raise DataFileError(path, "it does not exist", "check the path")
    suffix = path.suffix.lower()
    if suffix not in _TEXT_SUFFIXES:
        raise DataFileError(path, f"unknown file type {suffix!r}", "use .txt, .csv, .tsv, .jsonl or an image folder")
    try:
        kind = _TEXT_SUFFIXES[suffix]
        if kind is None:
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if label_column:
                raise DataFileError(path, "a .txt file has no label column", "use a .csv or .jsonl file for labels")
            rows = [{text_column: t} for t in texts]
        else:
            rows = _rows(path, kind)
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(path, f"it cannot be read ({err})", "give a UTF-8 text file") from None
    if not rows:
        raise DataFileError(path, "it holds no examples", "give a file with at least one example")
    texts, labels = [], []
    first_line = 1 if kind is None or kind == "json" else 2  # CSV: the header is line 1
    for number, row in enumerate(rows, first_line):
        for column in (text_column, label_column):
            if column and column not in row:
                raise DataFileError(path, f"no column {column!r} (it has {sorted(row)})", "name it with --text-column")
        text = row[text_column]
        if text is None or not str(text).strip():
            raise DataFileError(path, f"line {number}: empty {text_column!r} cell", "fill or remove that line")
        texts.append(str(text))
        if label_column:
            if row[label_column] is None or str(row[label_column]).strip() == "":
                raise DataFileError(path, f"line {number}: empty {label_column!r} cell", "fill or remove that line")
            labels.append(row[label_column])
    return Examples(texts, labels if label_column else None)


def label_ids(labels: list[Any], config: Any) -> list[int]:
    """Labels as read from a data file (names or ids) → the model's label ids (``relufy``, ``reluize --eval-file``).

    Raises:
        InvalidInputError: a name the model does not know (``config.label2id``), or an id out of range.

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
        else:
            ids.append(int(label))
    bad = sorted({i for i in ids if not 0 <= i < num_labels})
    if bad:
        raise InvalidInputError(f"Label ids {bad} are out of range for a model with {num_labels} labels.")
    return ids


def _modules(model_dir: Path) -> list[dict[str, Any]] | None:
    path = model_dir / "modules.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_pooling(model_dir: str | Path) -> Pooling | None:
    """The pooling of a sentence-transformers folder (None when ``model_dir`` is not one).

    Raises:
        UnsupportedPoolingError: a pooling mode other than exactly one of mean / cls / max.
    """
    model_dir = Path(model_dir)
    modules = _modules(model_dir)
    if modules is None:
        return None
    pooling = [m for m in modules if m.get("type") == _POOLING_TYPE]
    if not pooling:
        raise UnsupportedPoolingError(model_dir, f"modules.json has no {_POOLING_TYPE} module")
    config_path = model_dir / pooling[0].get("path", "") / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    on = sorted(key for key, value in config.items() if key.startswith("pooling_mode") and value is True)
    if len(on) != 1 or on[0] not in _POOLING_MODES:
        raise UnsupportedPoolingError(model_dir, f"pooling {on or 'none'} in {config_path}")
    return Pooling(_POOLING_MODES[on[0]], source=str(config_path.relative_to(model_dir)))


def sentence_transformers_files(model_dir: str | Path, release_dir: str | Path) -> list[str]:
    """Copy a sentence-transformers folder's own files (``modules.json``, module folders, configs) into a release.

    The transformer module (path ``""``) is the release's model itself; every other module folder and
    the top-level sentence-transformers configs are copied. Returns the copied files, relative to
    ``release_dir`` (for :func:`hf_lambda_gelu.release.folder.add_release_files`); ``[]`` for a plain folder.
    """
    model_dir, release_dir = Path(model_dir), Path(release_dir)
    modules = _modules(model_dir)
    if modules is None:
        return []
    names = ["modules.json"] + [
        n for n in ("sentence_bert_config.json", "config_sentence_transformers.json") if (model_dir / n).is_file()
    ]
    for module in modules:
        folder = module.get("path", "")
        if folder and (model_dir / folder).is_dir():
            names += [str(p.relative_to(model_dir)) for p in sorted((model_dir / folder).rglob("*")) if p.is_file()]
    for name in names:
        (release_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / name, release_dir / name)
    return names

"""relufy's text corpus, never held whole in memory: a data file read a line at a time into a memory-mapped Arrow
dataset (``datasets``), tokenized with ``Dataset.map``, and for a causal LM packed into blocks of ``max_length``.

Memory-mapped Arrow, not streaming: relufy needs the corpus's length (the held-out last tenth, the steps of an
epoch, the run plan), random access (the Trainer's shuffled order, the refit's seeded calibration subset through
``Dataset.select``) and a resume that skips to its data position; a streamed ``IterableDataset`` has none of these.
Arrow files on disk give all of them, and the operating system pages in only the rows a batch reads.

Every check of :func:`hf_lambda_gelu.relufy_data.text_rows` runs while the Arrow file is written (one pass over the
file): a bad line stops the run with the file, the line and the fix. Packing follows transformers' ``run_clm.py``:
the tokens of each ``map`` batch of texts (1000) are concatenated and cut into blocks of ``max_length``; the
remainder of each batch (fewer than ``max_length`` tokens) is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets

from .errors import DataFileError, InvalidInputError, InvalidSettingError, LambdaGELUError
from .relufy_data import label_ids, text_rows

__all__ = ["TEXT_COLUMN", "pack_blocks", "read_corpus", "tokenize_corpus"]

#: The column of a corpus that holds the texts (labels, when read, are ids in ``"labels"``).
TEXT_COLUMN = "text"
_MAP_BATCH = 1000  # texts tokenized (and packed) together: run_clm.py's default


@contextlib.contextmanager
def _progress_bars(shown: bool) -> Iterator[None]:
    """``datasets``' progress bars shown or hidden inside the block, as they were after it."""
    was = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if shown else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was else datasets.disable_progress_bars)()


def _rows(
    path: str, text_column: str, label_column: str | None, config: Any, max_examples: int | None
) -> Iterator[dict[str, Any]]:
    """The generator behind :func:`read_corpus`: checked rows, labels as the model's ids, at most ``max_examples``."""
    rows = text_rows(path, text_column=text_column, label_column=label_column)
    for number, text, label in itertools.islice(rows, max_examples):
        row = {TEXT_COLUMN: text}
        if label_column:
            try:
                row["labels"] = label_ids([label], config)[0]
            except InvalidInputError as err:
                raise DataFileError(path, f"line {number}: {str(err).rstrip('.')}", "fix the labels") from None
        yield row


def read_corpus(
    path: str | Path,
    cache_dir: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    config: Any = None,
    max_examples: int | None = None,
    progress: bool = False,
) -> datasets.Dataset:
    """A text data file as a memory-mapped ``datasets.Dataset`` (column ``"text"``, and ``"labels"``), checked as it is read.

    Args:
        path: ``.txt`` (one example a line), ``.csv``/``.tsv``/``.jsonl``/``.json`` (columns).
        cache_dir: where the Arrow file is written (a file unchanged since, read with the same settings, is reused).
        text_column: the column with the text (CSV/JSONL).
        label_column: also read labels from this column, as the model's label ids.
        config: the model's config, which maps label names to ids (needed with ``label_column``).
        max_examples: read only the first this many examples (None: all).
        progress: show the reading progress bar.

    Raises:
        DataFileError: what :func:`hf_lambda_gelu.relufy_data.text_rows` refuses, or a label the model does not know
            (the file, the line and the fix).
        InvalidSettingError: ``label_column`` without ``config``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.txt").write_text("a fine day\\n\\nrain again\\nold ships\\n")
    >>> list(read_corpus(folder / "t.txt", folder / "cache", max_examples=2)["text"])
    ['a fine day', 'rain again']
    """
    if label_column and config is None:
        raise InvalidSettingError(
            "config", None, f"labels ({label_column!r}) are read as the model's ids: give its config."
        )
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    labels = None if config is None else json.dumps(getattr(config, "label2id", None), sort_keys=True, default=str)
    key = [str(path.resolve()), stat and (stat.st_size, stat.st_mtime_ns), text_column, label_column, labels, max_examples]  # fmt: skip
    features = {TEXT_COLUMN: datasets.Value("string")}
    if label_column:
        features["labels"] = datasets.Value("int64")
    kwargs = {"path": str(path), "text_column": text_column, "label_column": label_column, "config": config,
              "max_examples": max_examples}  # fmt: skip
    try:
        with _progress_bars(progress):
            return datasets.Dataset.from_generator(
                _rows,
                features=datasets.Features(features),
                cache_dir=str(cache_dir),
                gen_kwargs=kwargs,
                fingerprint=hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32],
            )
    except datasets.exceptions.DatasetGenerationError as err:
        if isinstance(err.__cause__, LambdaGELUError):
            raise err.__cause__ from None  # the file, the line and the fix: not datasets' wrapper
        raise


def pack_blocks(encoded: Mapping[str, list[list[int]]], block: int) -> dict[str, list[list[int]]]:
    """Concatenate tokenized texts and cut them into blocks of ``block`` tokens (``run_clm.py``'s ``group_texts``).

    The last ``len(tokens) % block`` tokens, less than one block, are dropped.

    Args:
        encoded: a tokenizer's output for a batch of texts (``input_ids``, ``attention_mask``, ...).
        block: tokens a block (``--max-length``).

    >>> pack_blocks({"input_ids": [[1, 2, 3], [4, 5], [6, 7, 8]]}, 3)
    {'input_ids': [[1, 2, 3], [4, 5, 6]]}
    """
    joined = {key: list(itertools.chain.from_iterable(values)) for key, values in encoded.items()}
    total = len(joined["input_ids"]) // block * block
    return {key: [values[i : i + block] for i in range(0, total, block)] for key, values in joined.items()}


def _tokenize(batch: Mapping[str, list], tokenizer: Any, max_length: int, packing: bool) -> dict[str, list]:
    if packing:  # whole texts, cut only at block edges (verbose=False: no warning for texts over the model's length)
        return pack_blocks(dict(tokenizer(batch[TEXT_COLUMN], verbose=False)), max_length)
    encoded = dict(tokenizer(batch[TEXT_COLUMN], truncation=True, max_length=max_length))
    return {**encoded, **({"labels": batch["labels"]} if "labels" in batch else {})}


def tokenize_corpus(
    corpus: datasets.Dataset, tokenizer: Any, *, max_length: int, packing: bool = False, progress: bool = False
) -> datasets.Dataset:
    """Tokenize a corpus (:func:`read_corpus`) with ``Dataset.map``, one example a text or packed into blocks.

    The tokens are written as an Arrow file beside the corpus's (memory-mapped, like it).

    Args:
        corpus: the texts (column ``"text"``; ``"labels"`` kept one example a text, dropped when packing).
        tokenizer: the model's tokenizer.
        max_length: one example a text: truncation length; packing: tokens a block.
        packing: concatenate the texts and cut them into blocks of ``max_length`` (:func:`pack_blocks`; causal LMs).
        progress: show the tokenizing progress bar.

    Returns:
        The examples; packing leaves none when no batch of texts holds ``max_length`` tokens.

    >>> from transformers import AutoTokenizer
    >>> blocks = tokenize_corpus(corpus, AutoTokenizer.from_pretrained("gpt2"), max_length=128, packing=True)  # doctest: +SKIP
    """
    tokens = [type(tokenizer).__name__, getattr(tokenizer, "name_or_path", None), len(tokenizer)]
    settings = {"corpus": corpus._fingerprint, "tokenizer": tokens, "max_length": max_length, "packing": packing}
    with _progress_bars(progress):
        return corpus.map(
            _tokenize,
            batched=True,
            batch_size=_MAP_BATCH,
            remove_columns=corpus.column_names if packing else [TEXT_COLUMN],
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "packing": packing},
            new_fingerprint=hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:32],
            desc=f"Packing into blocks of {max_length} tokens" if packing else "Tokenizing",
        )

"""Calibration batches for a refit from a data file: ``reluize --calibration-data FILE`` (texts or an image folder).

A seeded random subset of ``size`` inputs is read with :func:`hf_lambda_gelu.relufy_data.read_examples`
(so every format and check of ``relufy --data`` applies), encoded with the model's tokenizer or image
processor, and batched (texts padded; the refit masks the padding out).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .errors import DataFileError
from .relufy_cli import _collator, _image
from .relufy_data import read_examples

__all__ = ["calibration_batches"]


def calibration_batches(
    path: str | os.PathLike,
    processor: Any,
    *,
    size: int = 512,
    max_length: int = 128,
    batch_size: int = 16,
    text_column: str = "text",
    seed: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Read up to ``size`` inputs of ``path`` (a seeded random subset) and batch them for the refit.

    Args:
        path: ``.txt`` / ``.csv`` / ``.tsv`` / ``.jsonl``, or a folder of images.
        processor: the model's tokenizer (texts) or image processor (images).
        size: the most inputs to use.
        max_length: tokens per text (truncation).
        batch_size: inputs per batch.
        text_column: the text column of a CSV/JSONL file.
        seed: draws the subset.

    Raises:
        DataFileError: the file cannot be used (see ``read_examples``), an image cannot be read (named), or it holds
            images and no image processor was given (or texts and no tokenizer).

    >>> import tempfile, pathlib
    >>> from transformers import BertTokenizerFast
    >>> tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"])})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.txt"
    >>> _ = path.write_text("a b\\nb\\na a a\\n")
    >>> [b["input_ids"].shape for b in calibration_batches(path, tokenizer, batch_size=2)]
    [torch.Size([2, 4]), torch.Size([1, 5])]
    """
    examples = read_examples(path, text_column=text_column)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[: max(1, size)]
    inputs = [examples.inputs[i] for i in sorted(order.tolist())]
    if examples.is_image != hasattr(processor, "preprocess"):
        have = "an image folder" if examples.is_image else "texts"
        raise DataFileError(path, f"it holds {have} and the model's processor cannot encode them", "give the other")
    collator = _collator(processor, examples.is_image)
    if examples.is_image:
        items = [{"pixel_values": _image(image_path, processor)} for image_path in inputs]
    else:
        encoded = processor(inputs, truncation=True, max_length=max_length)
        items = [{k: v[i] for k, v in encoded.items()} for i in range(len(inputs))]
    return [collator(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]

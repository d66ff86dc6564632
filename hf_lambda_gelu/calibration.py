"""Calibration batches for a refit from a data file: ``reluize --calibration-data FILE`` (texts or an image folder).

A seeded random subset of ``size`` inputs is read with :func:`hf_lambda_gelu.relufy_data.read_examples`
(so every format and check of ``relufy --data`` applies), encoded with the model's tokenizer or image
processor, and batched (texts padded; the refit masks the padding out).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import DataCollatorWithPadding, default_data_collator

from .errors import DataFileError
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
        DataFileError: the file cannot be used (see ``read_examples``), or it holds images and no image
            processor was given (or texts and no tokenizer).

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
    if examples.is_image:
        if not hasattr(processor, "preprocess"):
            raise DataFileError(path, "it is an image folder and the model has no image processor", "give texts")
        from PIL import Image

        def encode(chunk: list[Any]) -> dict[str, torch.Tensor]:
            images = []
            for image_path in chunk:
                with Image.open(image_path) as image:
                    images.append(image.convert("RGB"))
            return default_data_collator([{"pixel_values": p} for p in processor(images=images, return_tensors="pt")["pixel_values"]])  # fmt: skip
    else:
        if not callable(getattr(processor, "pad", None)):
            raise DataFileError(path, "it holds texts and the model has no tokenizer", "give an image folder")
        if processor.pad_token is None:  # GPT-2-style tokenizers: pad with EOS (the mask hides it)
            processor.pad_token = processor.eos_token
        collator = DataCollatorWithPadding(processor)

        def encode(chunk: list[Any]) -> dict[str, torch.Tensor]:
            encoded = processor(chunk, truncation=True, max_length=max_length)
            return collator([{k: v[i] for k, v in encoded.items()} for i in range(len(chunk))])

    return [encode(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]

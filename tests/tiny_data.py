"""Tiny random models and datasets for the training tests (offline, seconds on 2 CPU cores)."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    ViTConfig,
    ViTForImageClassification,
)

VOCAB = 64


def tiny_bert(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB)
    return BertForSequenceClassification(BertConfig(**{**cfg, "num_labels": 2, **overrides}))


def tiny_vit(seed: int = 0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    cfg = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=8, patch_size=4, num_channels=1, num_labels=3,
    )  # fmt: skip
    return ViTForImageClassification(cfg)


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=16, vocab_size=VOCAB))


def text_dataset(n: int = 64, length: int = 8, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(n, length))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (ids[:, 0] > VOCAB // 2).astype(int).tolist()})


def image_dataset(n: int = 48, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    pixels = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    labels = (pixels.mean(axis=(1, 2, 3)) > 0).astype(int) + (pixels[:, 0, 0, 0] > 1).astype(int)
    return Dataset.from_dict({"pixel_values": pixels.tolist(), "labels": labels.tolist()})


def lm_dataset(n: int = 48, length: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, size=(n, length))
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})


def accuracy(eval_pred) -> dict[str, float]:
    predictions, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(predictions, tuple):
        predictions = predictions[0]
    return {"accuracy": float((predictions.argmax(-1) == labels).mean())}


def training_args(output_dir, **overrides):
    from hf_lambda_gelu import LambdaGELUTrainingArguments

    defaults = dict(
        output_dir=str(output_dir), max_steps=8, per_device_train_batch_size=16, per_device_eval_batch_size=32,
        logging_steps=2, report_to="none", learning_rate=1e-3, lambda_learning_rate=0.05, save_strategy="no",
        use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
    )  # fmt: skip
    return LambdaGELUTrainingArguments(**{**defaults, **overrides})

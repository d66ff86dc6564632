#!/usr/bin/env python
"""Fine-tune a BERT-family model for text classification with λ-GELU and release it as a ReLU model.

The shape of transformers' ``run_glue.py`` / ``run_classification.py``: a Hub data set
(``--dataset_name``) or local csv/json files (``--train_file``/``--validation_file``), one text column
or a pair (``--text_column_name sentence1,sentence2``), a label column; every
``LambdaGELUTrainingArguments`` flag. ``--activation_mode`` picks the method or a baseline (A/B runs).

    python recipes/text_classification.py --model_name_or_path google-bert/bert-base-uncased \\
        --dataset_name nyu-mll/glue --dataset_config_name sst2 --text_column_name sentence \\
        --output_dir bert-sst2-relu --num_train_epochs 3

The output folder holds the ReLU model, tokenizer, model card, hardness profile (JSON/PNG), the
ReLU-ization report and ``all_results.json``. See recipes/README.md for launch configurations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common import (
    BaseDataArguments,
    BaseModelArguments,
    cap_sequence_length,
    check_data_cells,
    data_sources,
    label_list,
    load_metric,
    load_model,
    load_raw_datasets,
    recipe_defaults,
    require_columns,
    run_recipe,
    select_samples,
    split_validation,
    start_run,
    train_and_release,
)
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_lambda_gelu import LambdaGELUTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(BaseModelArguments):
    """Which checkpoint to start from (plus ``--activation_mode`` and the Hub options of the base class)."""

    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path, if not the model's own."}
    )


@dataclass
class DataTrainingArguments(BaseDataArguments):
    """What data to train and evaluate on (``--dataset_name`` or ``--train_file``, columns, lengths)."""

    text_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The text column, or two comma-separated columns for sentence pairs (default: 'sentence', "
            "else 'text')."
        },
    )
    label_column_name: str = field(default="label", metadata={"help": "The label column (ints or strings)."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer tokenized inputs are truncated."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out for validation when there is no validation split."}
    )
    metric_name: str = field(default="accuracy", metadata={"help": "The evaluate metric (accuracy ships offline)."})


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics written to ``all_results.json``."""
    # 1. parse (and refuse a bad launch)  2. logging  3. seed
    model_args, data_args, training_args = start_run(
        (ModelArguments, DataTrainingArguments, LambdaGELUTrainingArguments),
        argv,
        recipe_defaults(),
        family="BERT-family",
    )

    # 4. data
    raw = load_raw_datasets(data_args, model_args, builders={"csv": "csv", "json": "json", "jsonl": "json"})
    columns = raw["train"].column_names if "train" in raw else next(iter(raw.values())).column_names
    text_columns = (data_args.text_column_name or ("sentence" if "sentence" in columns else "text")).split(",")
    sources = data_sources(data_args, raw)
    for name, split in raw.items():
        require_columns(split, sources[name], label_column_name=data_args.label_column_name)
        for column in text_columns:
            require_columns(split, sources[name], text_column_name=column)
    check_data_cells(raw, data_args, text_columns=text_columns, label_column=data_args.label_column_name)
    raw = split_validation(raw, data_args.train_val_split if training_args.do_eval else 0.0, training_args.seed)
    labels, label_to_id = label_list(raw, data_args.label_column_name, data_sources(data_args, raw))

    # 5. model (through the λ-GELU patcher for --activation_mode lambda_gelu) and tokenizer
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **model_args.hub_kwargs(),
    )
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **model_args.hub_kwargs()
    )
    model = load_model(
        AutoModelForSequenceClassification,
        model_args,
        training_args,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )

    # 6. preprocess
    max_length = cap_sequence_length(data_args.max_seq_length, tokenizer, model.config, "--max_seq_length")

    def preprocess(batch: dict) -> dict:
        encoded = tokenizer(*(batch[c] for c in text_columns), truncation=True, max_length=max_length)
        raw_labels = batch[data_args.label_column_name]
        encoded["labels"] = raw_labels if label_to_id is None else [label_to_id[v] for v in raw_labels]
        return encoded

    with training_args.main_process_first(desc="tokenization"):
        processed = raw.map(
            preprocess,
            batched=True,
            remove_columns=columns,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
        )
    train_dataset = select_samples(processed["train"], data_args.max_train_samples) if training_args.do_train else None
    eval_dataset = (
        select_samples(processed["validation"], data_args.max_eval_samples) if training_args.do_eval else None
    )
    with training_args.main_process_first(desc="metric"):
        metric = load_metric(data_args.metric_name, cache_dir=model_args.cache_dir)

    def compute_metrics(eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        return metric.compute(predictions=logits.argmax(-1), references=eval_pred.label_ids)

    # 7. trainer  8. train/eval (λ-GELU: harden, train as ReLU, swap to ReLU)  9. save the release  10. push
    return train_and_release(
        model_args,
        training_args,
        model,
        processing_class=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=compute_metrics,
        metric_name=data_args.metric_name,
        dataset_names=[data_args.dataset_name or data_args.train_file or data_args.validation_file],
    )


if __name__ == "__main__":
    run_recipe(main)

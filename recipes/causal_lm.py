#!/usr/bin/env python
"""Fine-tune a GPT-2-family causal language model with λ-GELU and release it as a ReLU model.

The shape of transformers' ``run_clm.py``: a Hub data set (``--dataset_name``) or local text/json/csv
files (``--train_file``/``--validation_file``), texts tokenized, concatenated and cut into blocks of
``--block_size`` tokens; every ``LambdaGELUTrainingArguments`` flag. ``--activation_mode`` picks the
method or a baseline (A/B runs). Perplexity is exp(eval_loss).

    python recipes/causal_lm.py --model_name_or_path openai-community/gpt2 \\
        --dataset_name Salesforce/wikitext --dataset_config_name wikitext-2-raw-v1 --block_size 512 \\
        --max_eval_samples 200 --output_dir gpt2-wikitext-relu --num_train_epochs 1

GPT-2's ``gelu_new`` (tanh form) becomes the tanh form of λ-GELU, exact at λ = 1. The ReLU-ization
report compares the full logits of the evaluation set before and after the swap, so it holds them in
memory (blocks × block_size × vocabulary floats): keep ``--max_eval_samples`` modest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import chain

from common import (
    BaseDataArguments,
    BaseModelArguments,
    cap_sequence_length,
    check_data_cells,
    data_sources,
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
from transformers import AutoModelForCausalLM, AutoTokenizer, default_data_collator

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
    """What text to train and evaluate on (``--dataset_name`` or ``--train_file``), and the block size."""

    text_column_name: str = field(default="text", metadata={"help": "The text column."})
    block_size: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per training block (default 1024; capped at the tokenizer's max length and the "
            "model's positions, n_positions / max_position_embeddings)."
        },
    )
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Percent of train held out for validation when there is no validation split."}
    )
    keep_linebreaks: bool = field(default=True, metadata={"help": "Keep line breaks when reading .txt files."})


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe; returns the metrics written to ``all_results.json``."""
    # 1. parse (and refuse a bad launch)  2. logging  3. seed
    model_args, data_args, training_args = start_run(
        (ModelArguments, DataTrainingArguments, LambdaGELUTrainingArguments),
        argv,
        recipe_defaults(),
        family="GPT-2-family",
    )

    # 4. data
    files = {"txt": "text", "text": "text", "json": "json", "jsonl": "json", "csv": "csv"}
    is_text = (data_args.train_file or data_args.validation_file or "").endswith((".txt", ".text"))
    raw = load_raw_datasets(
        data_args,
        model_args,
        builders=files,
        **({"keep_linebreaks": data_args.keep_linebreaks} if is_text and not data_args.dataset_name else {}),
    )
    sources = data_sources(data_args, raw)
    for name, split in raw.items():
        require_columns(split, sources[name], text_column_name=data_args.text_column_name)
    check_data_cells(raw, data_args, text_columns=[data_args.text_column_name])
    fraction = data_args.validation_split_percentage / 100 if training_args.do_eval else 0.0
    raw = split_validation(raw, fraction, training_args.seed)

    # 5. model (through the λ-GELU patcher for --activation_mode lambda_gelu) and tokenizer
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **model_args.hub_kwargs()
    )
    model = load_model(AutoModelForCausalLM, model_args, training_args)

    # 6. preprocess: tokenize, concatenate, cut into blocks
    block_size = cap_sequence_length(data_args.block_size or 1024, tokenizer, model.config, "--block_size")
    columns = next(iter(raw.values())).column_names

    def tokenize(batch: dict) -> dict:
        return tokenizer(batch[data_args.text_column_name])

    def group_texts(batch: dict) -> dict:
        joined = {k: list(chain(*batch[k])) for k in batch}
        total = (len(joined["input_ids"]) // block_size) * block_size
        blocks = {k: [v[i : i + block_size] for i in range(0, total, block_size)] for k, v in joined.items()}
        blocks["labels"] = [ids.copy() for ids in blocks["input_ids"]]
        return blocks

    with training_args.main_process_first(desc="tokenization and grouping"):
        map_kwargs = {
            "num_proc": data_args.preprocessing_num_workers,
            "load_from_cache_file": not data_args.overwrite_cache,
        }
        lm = raw.map(tokenize, batched=True, remove_columns=columns, **map_kwargs).map(
            group_texts, batched=True, **map_kwargs
        )
    for name, split in lm.items():
        if len(split) == 0:
            raise ValueError(
                f"The {name} split has fewer than --block_size={block_size} tokens in all: no block to train or "
                "evaluate on. Lower --block_size or give more text."
            )
    train_dataset = select_samples(lm["train"], data_args.max_train_samples) if training_args.do_train else None
    eval_dataset = select_samples(lm["validation"], data_args.max_eval_samples) if training_args.do_eval else None

    # 7. trainer  8. train/eval (λ-GELU: harden, train as ReLU, swap to ReLU)  9. save the release  10. push
    return train_and_release(
        model_args,
        training_args,
        model,
        processing_class=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=default_data_collator,
        metric_name="loss",
        perplexity=True,
        dataset_names=[data_args.dataset_name or data_args.train_file or data_args.validation_file],
    )


if __name__ == "__main__":
    run_recipe(main)

#!/usr/bin/env python
"""Fine-tune a ViT-family model for image classification with λ-GELU and release it as a ReLU model.

The shape of transformers' ``run_image_classification.py``: a Hub data set (``--dataset_name``) or
local folders in imagefolder layout (one subfolder per class: ``--train_dir``/``--validation_dir``,
or the same folders as ``--train_file``/``--validation_file``); every ``LambdaGELUTrainingArguments``
flag. ``--activation_mode`` picks the method or a baseline (A/B runs).

    python recipes/image_classification.py --model_name_or_path google/vit-base-patch16-224-in21k \\
        --dataset_name uoft-cs/cifar10 --image_column_name img --output_dir vit-cifar10-relu \\
        --num_train_epochs 3

Without data or model flags (``python recipes/image_classification.py``) it runs its embedded default,
:func:`hf_lambda_gelu.demo_digits.run`: scikit-learn's handwritten digits, a small GELU ViT trained first,
then the whole λ-GELU story (``hf-lambda-gelu demo`` is the main demo, on a real pretrained BERT).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from common import (
    BaseDataArguments,
    BaseModelArguments,
    collate_images,
    data_sources,
    image_transform,
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
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

from hf_lambda_gelu import LambdaGELUTrainingArguments
from hf_lambda_gelu.demo_digits import run as run_digits_demo

logger = logging.getLogger(__name__)

#: Flags that name data or a model; without any of them the recipe runs the demo.
DATA_OR_MODEL_FLAGS = (
    "--model_name_or_path",
    "--dataset_name",
    "--dataset_config_name",
    "--train_dir",
    "--validation_dir",
    "--train_file",
    "--validation_file",
)


@dataclass
class ModelArguments(BaseModelArguments):
    """Which checkpoint to start from (plus ``--activation_mode`` and the Hub options of the base class)."""

    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor name or path, if not the model's own."}
    )


@dataclass
class DataTrainingArguments(BaseDataArguments):
    """What data to train and evaluate on (``--dataset_name`` or image folders, columns)."""

    train_dir: str | None = field(
        default=None, metadata={"help": "A folder in imagefolder layout (class subfolders) for training."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "A folder in imagefolder layout (class subfolders) for validation."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Same as --train_dir (an image folder)."})
    validation_file: str | None = field(default=None, metadata={"help": "Same as --validation_dir (an image folder)."})
    image_column_name: str = field(default="image", metadata={"help": "The image column."})
    label_column_name: str = field(default="label", metadata={"help": "The label column."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train held out for validation when there is no validation split."}
    )
    metric_name: str = field(default="accuracy", metadata={"help": "The evaluate metric (accuracy ships offline)."})


def is_demo_invocation(argv: list[str]) -> bool:
    """True when the arguments name no data and no model (and are neither one .json file nor a help request)."""
    if (len(argv) == 1 and argv[0].endswith(".json")) or {"-h", "--help"} & set(argv):
        return False
    return not any(arg.split("=", 1)[0] in DATA_OR_MODEL_FLAGS for arg in argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the recipe (or the demo, without data/model flags); returns the metrics of ``all_results.json``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if is_demo_invocation(argv):
        return run_digits_demo(argv)
    # 1. parse (and refuse a bad launch; lazily transformed images keep the image column)  2. logging  3. seed
    model_args, data_args, training_args = start_run(
        (ModelArguments, DataTrainingArguments, LambdaGELUTrainingArguments),
        argv,
        recipe_defaults(remove_unused_columns=False),
        family="ViT-family",
    )

    # 4. data
    for given, alias in (
        (data_args.train_dir, data_args.train_file),
        (data_args.validation_dir, data_args.validation_file),
    ):
        if given is not None and alias is not None:
            raise ValueError(f"Both a *_dir and a *_file flag name image folders ({given!r}, {alias!r}); pass one.")
    raw = load_raw_datasets(
        data_args,
        model_args,
        builders={"": "imagefolder"},
        data_files={
            "train": data_args.train_dir or data_args.train_file,
            "validation": data_args.validation_dir or data_args.validation_file,
        },
        what="--dataset_name (a Hub data set) or --train_dir (a folder with one subfolder per class)",
    )
    raw = split_validation(raw, data_args.train_val_split if training_args.do_eval else 0.0, training_args.seed)
    sources = data_sources(data_args, raw)
    for name, split in raw.items():
        columns = {"image_column_name": data_args.image_column_name, "label_column_name": data_args.label_column_name}
        require_columns(split, sources[name], **columns)
    labels, label_to_id = label_list(raw, data_args.label_column_name, sources)
    if label_to_id is not None:
        with training_args.main_process_first(desc="label ids"):
            raw = raw.map(
                lambda batch: {
                    data_args.label_column_name: [label_to_id[v] for v in batch[data_args.label_column_name]]
                },
                batched=True,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
            )

    # 5. model (through the λ-GELU patcher for --activation_mode lambda_gelu) and image processor
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **model_args.hub_kwargs(),
    )
    processor = AutoImageProcessor.from_pretrained(
        model_args.image_processor_name or model_args.model_name_or_path, **model_args.hub_kwargs()
    )
    model = load_model(
        AutoModelForImageClassification,
        model_args,
        training_args,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )

    # 6. preprocess (on the fly, like the transformers example)
    transform = image_transform(
        processor,
        image_column=data_args.image_column_name,
        label_column=data_args.label_column_name,
        num_channels=config.num_channels,
    )
    train_dataset = (
        select_samples(raw["train"], data_args.max_train_samples).with_transform(transform)
        if training_args.do_train
        else None
    )
    eval_dataset = (
        select_samples(raw["validation"], data_args.max_eval_samples).with_transform(transform)
        if training_args.do_eval
        else None
    )
    with training_args.main_process_first(desc="metric"):
        metric = load_metric(data_args.metric_name, cache_dir=model_args.cache_dir)

    def compute_metrics(eval_pred) -> dict:
        return metric.compute(predictions=eval_pred.predictions.argmax(-1), references=eval_pred.label_ids)

    # 7. trainer  8. train/eval (λ-GELU: harden, train as ReLU, swap to ReLU)  9. save the release  10. push
    return train_and_release(
        model_args,
        training_args,
        model,
        processing_class=processor,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate_images,
        compute_metrics=compute_metrics,
        metric_name=data_args.metric_name,
        dataset_names=[data_args.dataset_name or data_args.train_dir or data_args.train_file or "images"],
    )


if __name__ == "__main__":
    run_recipe(main)

"""The image recipe's embedded default: the λ-GELU story on a small ViT and scikit-learn's digits.

``python recipes/image_classification.py`` (no data or model flags) runs :func:`run`. (The main demo,
``hf-lambda-gelu demo``, is :mod:`hf_lambda_gelu.demo`: a real pretrained BERT, where the naive swap
visibly hurts; on this tiny ViT it barely does.)

1. Data: scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1797 8×8 grayscale
   images, shipped with scikit-learn, no download), a fixed stratified 80/20 train/validation split
   (seed 0).
2. The "pretrained checkpoint": a small GELU ViT trained from scratch with the stock
   ``transformers.Trainer`` and saved with its ``ViTImageProcessor`` to
   ``OUTPUT_DIR/gelu_pretrained`` (``gelu_pretrained_quick`` with ``--quick``). A rerun reuses it;
   ``--pretrained_model PATH`` starts from another GELU checkpoint instead.
3. Baselines on the validation set: that checkpoint's accuracy, and its accuracy after a naive
   GELU → ReLU swap (no training).
4. The method: the checkpoint is fine-tuned by :class:`~hf_lambda_gelu.LambdaGELUTrainer` with the
   package's defaults (GELU → λ-GELU, hardened toward λ* early, ReLU with distillation to the
   checkpoint, swapped to ``nn.ReLU``); the
   release (ReLU model, processor, model card, hardness profile JSON/PNG, ReLU-ization report,
   ``all_results.json``) is written to ``OUTPUT_DIR`` (default ``lambda_gelu_demo_digits/``: not the main
   demo's folder), which must be new, empty or an earlier run of this demo (:mod:`hf_lambda_gelu.demo_output`;
   ``--overwrite_output_dir`` writes into any folder).
5. A table of the four accuracies is printed (and put into the model card).

Every ``LambdaGELUTrainingArguments`` flag works (``--num_train_epochs``, ``--hardening_start``,
``--distill_alpha``...), with demo defaults (:data:`DEMO_DEFAULTS`); ``--quick`` shrinks the
model and the step counts for smoke tests. Progress bars are the Trainer's own.

The demo is written against the package's public API only (``LambdaGELUTrainer``,
``gelu_to_relu``, ``measure_swap``, ``save_release``): it is also the worked example of the
method. The recipes' plumbing (``recipes/common.py``) is not part of the installed package.
It needs the ``demo`` extra (scikit-learn, for the digits): ``pip install 'hf-lambda-gelu[demo]'``.

Threads and launch under ``accelerate``: docs/design.md.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .demo import BASELINES_NOTE, format_table, parse_demo_args
from .demo_output import DEMO_KEY, check_demo_output_dir, results_file
from .errors import MissingExtraError
from .metrics import compute_accuracy
from .release.folder import save_release
from .reluize import gelu_to_relu
from .swap_measure import measure_swap
from .trainer import LambdaGELUTrainer

__all__ = ["DEMO_DEFAULTS", "DemoArguments", "ROWS", "digits_dataset", "run"]

logger = logging.getLogger(__name__)

#: The demo's name in its ``all_results.json`` (an earlier run of it may be replaced).
DEMO_NAME = "vit-digits"
#: The cached GELU checkpoints it keeps in its output folder (normal, ``--quick``).
CACHES = ("gelu_pretrained", "gelu_pretrained_quick")
#: Fine-tune defaults of the demo (every one can be overridden by its flag).
DEMO_DEFAULTS: dict[str, Any] = {
    "output_dir": "lambda_gelu_demo_digits",
    "do_train": True,
    "do_eval": True,
    "num_train_epochs": 4,
    "learning_rate": 5e-4,
    "weight_decay": 0.05,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256,
    "logging_steps": 20,
    "save_strategy": "no",
    "report_to": "none",
    "remove_unused_columns": False,
    "dataloader_pin_memory": False,
    "seed": 0,
    "data_seed": 0,
}
#: What ``--quick`` changes: a few steps only (smoke tests).
QUICK_DEFAULTS: dict[str, Any] = {"max_steps": 16, "logging_steps": 4, "pretrain_epochs": 1.0}

#: The GELU ViT trained as the "pretrained checkpoint" (8×8 grayscale digits, 2×2 patches).
VIT_DIMS = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128}
QUICK_VIT_DIMS = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}

VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass
class DemoArguments:
    """The demo's own flags (the fine-tune takes every ``LambdaGELUTrainingArguments`` flag too)."""

    pretrained_model: str | None = field(
        default=None,
        metadata={
            "help": "A GELU ViT checkpoint for 8×8 grayscale digits to start from (default: train one with the "
            "stock Trainer and cache it in OUTPUT_DIR/gelu_pretrained)."
        },
    )
    pretrain_epochs: float = field(default=15.0, metadata={"help": "Epochs of the GELU pretraining."})
    pretrain_learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the GELU pretraining."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only N validation images."})
    quick: bool = field(
        default=False, metadata={"help": "Smaller model and a few steps only (a smoke test, not a result)."}
    )
    num_threads: int = field(
        default=1, metadata={"help": "torch intra-op threads (the model is tiny; 0 keeps torch's default)."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir that holds no earlier run of this demo (files replaced)."
        },
    )


def digits_dataset(seed: int = SPLIT_SEED):
    """scikit-learn's digits as a ``DatasetDict`` (``image``: 8×8 grayscale PIL, ``label``: ClassLabel 0-9).

    The split is fixed: stratified, 20 % validation, ``seed``.

    >>> data = digits_dataset()
    >>> len(data["train"]), len(data["validation"])
    (1437, 360)
    """
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise MissingExtraError("The demo (its handwritten digits data set)", "scikit-learn", "demo") from err

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 → 0..255
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    dataset = Dataset.from_dict(
        {"image": [PILImage.fromarray(p) for p in pixels], "label": digits.target.tolist()}, features=features
    )
    split = dataset.train_test_split(test_size=VALIDATION_FRACTION, seed=seed, stratify_by_column="label")
    split["validation"] = split.pop("test")
    return split


def _processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(do_resize=False, size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5])


def _transform(processor):
    """A ``with_transform`` function: grayscale images → ``pixel_values``, ``label`` → ``labels``."""

    def transform(batch: dict) -> dict:
        images = [image.convert("L") for image in batch["image"]]
        return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"], "labels": batch["label"]}

    return transform


def _first(dataset, count: int | None):
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


def _pretrain_gelu_vit(path: Path, train, processor, demo_args: DemoArguments, training_args) -> None:
    """Train the small GELU ViT with the stock Trainer and save it (with its processor) to ``path``."""
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification, set_seed

    set_seed(training_args.seed)
    names = train.features["label"].names
    config = ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **(QUICK_VIT_DIMS if demo_args.quick else VIT_DIMS),
    )
    args = TrainingArguments(
        output_dir=str(path),
        num_train_epochs=demo_args.pretrain_epochs,
        learning_rate=demo_args.pretrain_learning_rate,
        weight_decay=0.05,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        per_device_train_batch_size=training_args.per_device_train_batch_size,
        logging_steps=training_args.logging_steps,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_pin_memory=training_args.dataloader_pin_memory,
        seed=training_args.seed,
        use_cpu=training_args.use_cpu,
        disable_tqdm=training_args.disable_tqdm,
    )
    trainer = Trainer(
        model=ViTForImageClassification(config),
        args=args,
        train_dataset=train,
        processing_class=processor,
    )
    logger.info("Pretraining the GELU ViT (%g epochs) → %s", demo_args.pretrain_epochs, path)
    trainer.train()
    trainer.save_model()
    trainer.accelerator.wait_for_everyone()


def _gelu_baselines(checkpoint: str, eval_dataset, training_args) -> dict[str, Any]:
    """Accuracy of the GELU checkpoint, and of the same checkpoint naively swapped GELU → ReLU.

    Returns ``gelu_eval_accuracy``, ``naive_swap_eval_accuracy`` and the swap's disruption figures
    (``naive_swap_max_abs_logit_diff``, ``naive_swap_mean_abs_logit_diff``, ``naive_swap_prediction_agreement``).
    """
    from transformers import AutoModelForImageClassification, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=training_args.output_dir,
        per_device_eval_batch_size=training_args.per_device_eval_batch_size,
        report_to="none",
        remove_unused_columns=False,
        dataloader_pin_memory=training_args.dataloader_pin_memory,
        use_cpu=training_args.use_cpu,
        disable_tqdm=training_args.disable_tqdm,
    )
    model = AutoModelForImageClassification.from_pretrained(checkpoint)
    trainer = Trainer(model=model, args=args, eval_dataset=eval_dataset, compute_metrics=compute_accuracy)
    # the naive swap, through the same walker as the method (public API: gelu_to_relu)
    report = measure_swap(model, gelu_to_relu, lambda m: trainer.predict(eval_dataset, metric_key_prefix="eval"))
    return {
        "gelu_eval_accuracy": report.before_swap["eval_accuracy"],
        "naive_swap_eval_accuracy": report.after_swap["eval_accuracy"],
        **{f"naive_swap_{k}": v for k, v in report.disruption.items()},
    }


#: Table rows: (label, accuracy key, key prefix of the swap figures or None); the shape of the main demo's.
ROWS = (
    ("GELU ViT (the pretrained checkpoint)", "gelu_eval_accuracy", None),
    ("naive swap: that checkpoint, GELU → ReLU", "naive_swap_eval_accuracy", "naive_swap_"),
    ("λ-GELU: fine-tuned and hardened, before the swap", "reluize_before_eval_accuracy", None),
    ("λ-GELU → ReLU: the released ReLU model", "eval_accuracy", "reluize_"),
)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """The digits story (module docstring) for ``argv`` (default ``sys.argv[1:]``: :class:`DemoArguments` and
    ``LambdaGELUTrainingArguments`` flags); returns what it writes to ``all_results.json``, as
    :func:`hf_lambda_gelu.demo.run` does."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification, set_seed

    start = time.perf_counter()
    # 1. parse: demo defaults, shrunk by --quick, under the user's flags
    argv = list(sys.argv[1:] if argv is None else argv)
    demo_args, training_args = parse_demo_args(argv, DemoArguments, DEMO_DEFAULTS, QUICK_DEFAULTS)
    check_demo_output_dir(training_args.output_dir, DEMO_NAME, caches=CACHES, overwrite=demo_args.overwrite_output_dir)
    data = digits_dataset()  # first: without the demo extra, stop before anything else happens
    # 2. logging, threads  3. seed
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    if demo_args.num_threads > 0:
        torch.set_num_threads(demo_args.num_threads)
    set_seed(training_args.seed)

    # 4. data: the digits, a fixed split
    train = _first(data["train"], demo_args.max_train_samples)
    validation = _first(data["validation"], demo_args.max_eval_samples)

    # 5. the GELU "pretrained checkpoint" (trained once, cached), and its baselines
    output_dir = Path(training_args.output_dir)
    checkpoint = demo_args.pretrained_model
    if checkpoint is None:
        cached = output_dir / CACHES[demo_args.quick]
        if (cached / "config.json").is_file() and (cached / "model.safetensors").is_file():
            logger.info("Reusing the GELU checkpoint cached in %s.", cached)
        else:
            processor = _processor()
            _pretrain_gelu_vit(cached, train.with_transform(_transform(processor)), processor, demo_args, training_args)
        checkpoint = str(cached)
    processor = AutoImageProcessor.from_pretrained(checkpoint)
    train, validation = train.with_transform(_transform(processor)), validation.with_transform(_transform(processor))
    baselines = _gelu_baselines(checkpoint, validation, training_args)

    # 6. the method: LambdaGELUTrainer converts the GELU model (GELU → λ-GELU with the λ flags), learns λ,
    # hardens and swaps to ReLU at the end of train(); its metrics say reluize_*
    trainer = LambdaGELUTrainer(
        model=AutoModelForImageClassification.from_pretrained(checkpoint),
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=processor,
        compute_metrics=compute_accuracy,
    )
    trained = trainer.train()
    # the trainer's own naive_swap_* baseline (its model before hardening) stays in the report and the card
    results = {k: v for k, v in trained.metrics.items() if not k.startswith("naive_swap_")}
    results.update(trainer.evaluate(), train_samples=len(train), eval_samples=len(validation), **baselines)
    results[DEMO_KEY] = DEMO_NAME  # a rerun may replace this folder
    table = format_table(results, ROWS)

    # 7. the release folder, with the table in its card, and all_results.json
    card_text = (
        f"Demo run on the handwritten digits ({len(validation)} validation images):\n\n{table}\n\n{BASELINES_NOTE}"
    )
    if trainer.is_world_process_zero():
        save_release(
            trainer.model,
            output_dir,
            processing_class=processor,
            base_model=checkpoint,
            report=trainer.reluization_report,
            card_kwargs={
                "dataset_names": ["scikit-learn digits (sklearn.datasets.load_digits)"],
                "extra_text": card_text,
            },
            overwrite=True,
            add_files=results_file(results),  # all_results.json: a release file, listed in the manifest
        )
        print(
            f"\nλ-GELU demo: handwritten digits, accuracy on {len(validation)} validation images\n{table}\n"
            f"Release (ReLU model, model card, hardness profile plot, all_results.json): {output_dir}\n"
            f"Wall time: {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    trainer.accelerator.wait_for_everyone()
    return results

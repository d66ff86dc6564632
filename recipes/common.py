"""Plumbing shared by the recipes (``recipes/*.py``); not part of the installed package.

The recipes take the flags and the ``main()`` order of transformers' ``run_glue.py``,
``run_image_classification.py`` and ``run_clm.py`` (dataclasses + ``HfArgumentParser``), but not their
one-file form: what every recipe does the same way lives here (``from common import ...``: a script's
folder is on ``sys.path`` when it runs as ``python recipes/x.py`` or under ``accelerate launch``), and a
recipe's ``main()`` keeps only what is its own (data, model class, preprocessing), between
:func:`start_run` (parse, checks, logging, seed) and :func:`train_and_release` (trainer, training and the
swap, the release folder, the push). It imports the package's public API only (``hf_lambda_gelu`` and
``hf_lambda_gelu.release``). Here:

- argument parsing (CLI flags or one ``.json`` file) with recipe defaults, logging, the checks that
  catch a bad launch early (:func:`parse_args`, :func:`setup_logging`, :func:`check_run`);
- data loading from a Hub data set or local files, column checks, label lists, image transforms
  (:func:`load_raw_datasets`, :func:`require_columns`, :func:`label_list`, :func:`image_transform`);
- the three activation modes for A/B runs (:data:`ACTIVATION_MODES`): the model loading
  (:func:`load_model`), the trainer class (:func:`build_trainer`), training and the swap
  (:func:`train_and_evaluate`), all writing one metrics layout (:func:`swap_metrics`); metrics that
  load offline (:func:`load_metric`: the ``evaluate`` scripts in ``recipes/metrics/``);
- the output folder and the push (:func:`finish_run`), and the scripts' entry point: bad input as one
  line without traceback, exit code 1, and a clean exit of distributed workers (:func:`run_recipe`,
  :func:`exit_if_distributed`); data problems name the file and line (``data_checks.py``, and
  :func:`check_data_cells` for empty cells and mixed label types), a run of
  zero length is refused (:func:`check_run_length`), sequence lengths are capped at the model's
  positions (:func:`cap_sequence_length`).

Defaults, the metrics layout, the release and the CPU launch: docs/design.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from data_checks import check_cells, check_labels_seen_in_training, check_splits_not_empty, diagnose_data_files
from output_dirs import check_run_output_dir

from hf_lambda_gelu import (
    CheckpointDiskFullError,
    GELURemnantsError,
    LambdaGELUTrainer,
    MissingExtraError,
    ReluizeReport,
    dummy_inputs,
    find_gelu_remnants,
    from_pretrained,
    gelu_to_relu,
    measure_swap,
    save_release,
    summary_metrics,
    upload_release,
)
from hf_lambda_gelu.release import PROFILE_JSON_FILENAME, PROFILE_PLOT_FILENAME, REPORT_FILENAME

__all__ = [
    "ACTIVATION_MODES",
    "RESULTS_FILENAME",
    "RELUIZE_KEYS",
    "BaseDataArguments",
    "BaseModelArguments",
    "ColumnNotFoundError",
    "HubTarget",
    "MetricNotFoundError",
    "MissingDataError",
    "build_trainer",
    "cap_sequence_length",
    "check_data_cells",
    "check_launch",
    "check_run",
    "check_run_length",
    "collate_images",
    "data_sources",
    "exit_if_distributed",
    "finish_run",
    "image_transform",
    "label_list",
    "load_metric",
    "load_model",
    "load_raw_datasets",
    "model_max_positions",
    "naive_relu_swap",
    "parse_args",
    "recipe_defaults",
    "require_columns",
    "run_recipe",
    "select_samples",
    "setup_logging",
    "split_validation",
    "start_run",
    "swap_metrics",
    "take_over_push",
    "train_and_evaluate",
    "train_and_release",
    "with_perplexity",
]

logger = logging.getLogger(__name__)

#: ``--activation_mode`` values: the method, the plain GELU baseline, and the naive swap baseline.
ACTIVATION_MODES = ("lambda_gelu", "gelu", "naive_relu_swap")
#: All metrics of a run (``trainer.save_metrics("all", ...)``).
RESULTS_FILENAME = "all_results.json"
#: Swap figures of the report, as ``reluize_<name>`` in the results (the names ``LambdaGELUTrainer`` logs).
RELUIZE_KEYS = ("max_abs_logit_diff", "mean_abs_logit_diff", "prediction_agreement", "max_error_bound")
#: The local ``evaluate`` metric scripts (``<name>.py``): they load without network.
METRICS_DIR = Path(__file__).resolve().parent / "metrics"


class MissingDataError(ValueError):
    """A recipe was given no data: neither a Hub data set nor local files."""

    def __init__(self, what: str) -> None:
        super().__init__(f"No training data given: pass {what}.")


class MetricNotFoundError(FileNotFoundError):
    """A metric is neither a local script in ``recipes/metrics/`` nor loadable with ``evaluate.load``."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        local = sorted(path.stem for path in METRICS_DIR.glob("*.py"))
        super().__init__(
            f"Metric {name!r} is not in recipes/metrics/ (there: {local}) and evaluate.load({name!r}) failed: "
            f"{str(cause).rstrip('.')}. Without network (HF_HUB_OFFLINE=1), use a local metric or pass the path "
            "of a local evaluate metric script (a .py file or a folder holding <name>.py)."
        )


class ColumnNotFoundError(ValueError):
    """A column named by a flag is not in the data set."""

    def __init__(self, flag: str, column: str, columns: Sequence[str], source: str | None = None) -> None:
        self.column = column
        self.columns = list(columns)
        super().__init__(
            f"Column {column!r} (--{flag}) not found in {source or 'the data set'}; its columns are {self.columns}. "
            f"Pass --{flag} with one of them."
        )


@dataclass
class BaseModelArguments:
    """Model flags every recipe has (recipes subclass it as their ``ModelArguments``)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The checkpoint to start from: a Hub model id or a local folder."}
    )
    activation_mode: str = field(
        default="lambda_gelu",
        metadata={
            "help": "lambda_gelu: the method: harden λ to λ* (pinned from the first step by default; learned first with "
            "--hardening_start > 0), train as ReLU, swap to ReLU. gelu: plain GELU fine-tune with the "
            "stock Trainer (no conversion, no swap). naive_relu_swap: GELU fine-tune, then swap GELU→ReLU "
            "directly and evaluate before/after. All three write the same all_results.json layout."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where to store models and data sets downloaded from the Hub."}
    )
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use (branch name, tag name or commit id)."}
    )
    token: str | None = field(
        default=None, metadata={"help": "Hub token for private models and data sets (default: the stored login)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the Hub (only for repos you trust)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Re-initialize head weights whose shape differs (e.g. a classifier with another label count)."
        },
    )
    allow_gelu_remnants: bool = field(
        default=False,
        metadata={
            "help": "Release a model that keeps GELUs no config field controls (hard-coded heads, functional calls); "
            "the card lists them. Without it such a model is refused when it is loaded, before training."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir (same-named files are replaced). Never the model folder."
        },
    )

    def __post_init__(self) -> None:
        if self.activation_mode not in ACTIVATION_MODES:
            raise ValueError(
                f"activation_mode={self.activation_mode!r} is invalid: use one of {list(ACTIVATION_MODES)}."
            )

    def hub_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for every ``from_pretrained`` call."""
        return {
            "cache_dir": self.cache_dir,
            "revision": self.model_revision,
            "token": self.token,
            "trust_remote_code": self.trust_remote_code,
        }


@dataclass
class BaseDataArguments:
    """Data flags every recipe has (recipes subclass it as their ``DataTrainingArguments``)."""

    dataset_name: str | None = field(default=None, metadata={"help": "A data set on the Hub (via datasets)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The data set's configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "A local training data file."})
    validation_file: str | None = field(default=None, metadata={"help": "A local validation data file."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (quick runs, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation examples (quick runs, debugging)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the preprocessed data sets."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for the preprocessing (datasets.map)."}
    )

    def __post_init__(self) -> None:
        for flag in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, flag)
            if value is not None and value < 1:
                raise ValueError(f"--{flag} {value} leaves no examples: pass a positive count, or leave it unset.")


# -- parsing, logging, checks ------------------------------------------------------------------------------------


def _multi_process_without_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    has_accelerator = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator


def recipe_defaults(**overrides: Any) -> dict[str, Any]:
    """Defaults the recipes put over TrainingArguments' own: train and evaluate, CPU when launched CPU-only DDP.

    Args:
        **overrides: more defaults (e.g. ``remove_unused_columns=False`` for lazily transformed images).

    >>> recipe_defaults()["do_train"]
    True
    """
    defaults: dict[str, Any] = {"do_train": True, "do_eval": True}
    if _multi_process_without_accelerator():
        defaults["use_cpu"] = True
    return {**defaults, **overrides}


def parse_args(
    dataclass_types: Sequence[type], argv: Sequence[str] | None = None, defaults: dict[str, Any] | None = None
) -> tuple:
    """Parse CLI flags, or one ``.json`` file given as the only argument, into the dataclasses.

    Args:
        dataclass_types: e.g. ``(ModelArguments, DataTrainingArguments, LambdaGELUTrainingArguments)``.
        argv: the arguments (default ``sys.argv[1:]``).
        defaults: field values used where the flags / the JSON file give none.

    Returns:
        One instance per dataclass, in order.

    >>> from hf_lambda_gelu import LambdaGELUTrainingArguments
    >>> (args,) = parse_args([LambdaGELUTrainingArguments], ["--output_dir", "out"], {"do_train": True})
    >>> args.do_train, args.output_dir
    (True, 'out')
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types)
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = dict(defaults or {})
    if len(argv) == 1 and argv[0].endswith(".json"):
        values = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        return tuple(parser.parse_dict({**defaults, **values}))
    parser.set_defaults(**defaults)
    return tuple(parser.parse_args_into_dataclasses(args=argv))


def setup_logging(training_args) -> None:
    """Logging as in transformers' examples: info on the main process, warnings on the others.

    Logs one line per process with its rank and the world size (how a launch is checked).
    """
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in ("__main__", "hf_lambda_gelu"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        "Process rank: %d, world size: %d, device: %s, distributed training: %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.parallel_mode.value == "distributed",
    )
    logger.info("Training/evaluation parameters %s", training_args)


def start_run(
    argument_classes: Sequence[type], argv: Sequence[str] | None, defaults: dict[str, Any], *, family: str
) -> tuple:
    """Steps 1–3 of every recipe's ``main()``: parse, refuse a bad launch before anything loads, logging, seed.

    Args:
        argument_classes: ``(ModelArguments, DataTrainingArguments, LambdaGELUTrainingArguments)``.
        argv: the arguments (default ``sys.argv[1:]``; one ``.json`` file, or flags).
        defaults: from :func:`recipe_defaults`.
        family: the checkpoints the recipe takes, named when ``--model_name_or_path`` is missing ("BERT-family").

    Returns:
        ``(model_args, data_args, training_args)``.

    Raises:
        ValueError: no ``--model_name_or_path``; what :func:`check_run` refuses.
    """
    from transformers import set_seed

    model_args, data_args, training_args = parse_args(argument_classes, argv, defaults)
    if model_args.model_name_or_path is None:
        raise ValueError(f"Pass --model_name_or_path: a {family} checkpoint (Hub id or local folder).")
    check_run(model_args, training_args)
    setup_logging(training_args)
    set_seed(training_args.seed)
    return model_args, data_args, training_args


def check_launch(training_args) -> None:
    """Fail when several processes were launched but did not join one process group.

    Each would train alone and overwrite the others' output (accelerate's multi-GPU launcher on a
    machine without GPU, with ``--use_cpu false``).

    Raises:
        ValueError: saying how to fix the launch.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size == 1:
        raise ValueError(
            f"{launched} processes were launched but each runs alone (world size 1), so they would train "
            "separately and overwrite each other's output. On a machine without GPU pass --use_cpu true (the "
            "recipes default to it when they see no accelerator) or set ACCELERATE_USE_CPU=true."
        )


def check_run(model_args: BaseModelArguments, training_args) -> None:
    """Reject flag combinations the recipes cannot honour, before anything is loaded.

    Raises:
        ValueError: ``lambda_gelu`` without training, with ``--reluize_at_end false`` or ``--hardening_start
            1.0``; a zero-length run (:func:`check_run_length`); ``--push_to_hub`` of a ReLU release without
            ``--hub_model_id``; a bad launch (:func:`check_launch`); an output folder that is not empty, is the
            model folder or cannot be written (``output_dirs.OutputDirError``).
    """
    check_launch(training_args)
    if model_args.activation_mode == "lambda_gelu":
        if not training_args.do_train:
            raise ValueError(
                "--do_train false does not fit --activation_mode lambda_gelu: λ is hardened during "
                "training. Use --activation_mode gelu (evaluate the checkpoint) or naive_relu_swap (evaluate its "
                "naive ReLU swap) for evaluation-only runs."
            )
        if not training_args.reluize_at_end or training_args.hardening_start >= 1.0:
            flag = "--reluize_at_end false" if not training_args.reluize_at_end else "--hardening_start 1.0"
            raise ValueError(
                f"{flag}: the recipes always end with the ReLU swap (their output is a ReLU "
                "checkpoint). Use LambdaGELUTrainer directly to keep the λ-GELU model."
            )
    if training_args.do_train:
        check_run_length(training_args)
    if training_args.push_to_hub and model_args.activation_mode != "gelu" and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. your-name/bert-relu) to name the Hub repo.")
    # a resume writes into its own run folder on purpose
    resuming = bool(training_args.resume_from_checkpoint)
    check_run_output_dir(
        training_args.output_dir,
        model_args.model_name_or_path,
        overwrite=model_args.overwrite_output_dir or resuming,
    )


def check_run_length(training_args) -> None:
    """Refuse a training run of zero length (``--max_steps 0``, ``--num_train_epochs 0``).

    With no steps there is nothing to train and hardening would jump to λ* in one step.

    Raises:
        ValueError: naming the flag and what to pass.
    """
    if training_args.max_steps == 0:
        raise ValueError(
            "--max_steps 0 trains nothing: pass a positive number of steps (or -1 to use --num_train_epochs)."
        )
    if training_args.max_steps < 0 and not training_args.num_train_epochs > 0:
        raise ValueError(
            f"--num_train_epochs {training_args.num_train_epochs} trains nothing: pass a positive number of epochs "
            "(or --max_steps N)."
        )


def model_max_positions(config) -> int | None:
    """The longest input the model's position embeddings allow (``n_positions``/``max_position_embeddings``)."""
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def cap_sequence_length(requested: int, tokenizer, config, flag: str) -> int:
    """``requested`` capped at the tokenizer's ``model_max_length`` and the model's positions, with a log line.

    >>> from transformers import GPT2Config
    >>> cap_sequence_length(1024, None, GPT2Config(n_positions=64), "--block_size")
    64
    """
    limits = {"the tokenizer's model_max_length": getattr(tokenizer, "model_max_length", None)}
    limits["the model's position embeddings"] = model_max_positions(config)
    length = requested
    for what, limit in limits.items():
        if isinstance(limit, int) and 0 < limit < length:
            logger.warning("%s=%d is longer than %s (%d): using %d.", flag, requested, what, limit, limit)
            length = limit
    return length


# -- data --------------------------------------------------------------------------------------------------------


def load_raw_datasets(
    data_args: BaseDataArguments,
    model_args: BaseModelArguments,
    *,
    builders: dict[str, str],
    data_files: dict[str, str] | None = None,
    what: str = "--dataset_name (a Hub data set) or --train_file (a local file)",
    **builder_kwargs: Any,
):
    """The raw ``DatasetDict``: the Hub data set ``--dataset_name``, else the local files.

    Args:
        data_args: the recipe's data arguments.
        model_args: for ``cache_dir`` and ``token``.
        builders: file extension → ``datasets`` builder (``{"csv": "csv", "json": "json"}``); the key
            ``""`` (a folder) maps a directory, e.g. to ``"imagefolder"``.
        data_files: split → path (default: ``train_file`` / ``validation_file``).
        what: the flags to name when nothing is given.
        **builder_kwargs: more arguments for ``load_dataset`` (``keep_linebreaks`` for text).

    Raises:
        MissingDataError: no data set and no files.
        DataFileError: a file that cannot be read or has no examples (file, line and fix named).
        ValueError: files of different kinds, or a kind not in ``builders``.
    """
    from datasets import load_dataset

    hub = {"cache_dir": model_args.cache_dir, "token": model_args.token}
    if data_args.dataset_name is not None:
        return load_dataset(data_args.dataset_name, data_args.dataset_config_name, **hub)
    if data_files is None:
        data_files = {"train": data_args.train_file, "validation": data_args.validation_file}
    data_files = {split: str(path) for split, path in data_files.items() if path is not None}
    if not data_files:
        raise MissingDataError(what)
    kinds = {
        split: "" if os.path.isdir(path) else Path(path).suffix.lstrip(".").lower()
        for split, path in data_files.items()
    }
    if len(set(kinds.values())) > 1:
        raise ValueError(f"The data files are of different kinds ({kinds}); give files of one kind.")
    kind = next(iter(kinds.values()))
    if kind not in builders:
        accepted = [f".{ext}" if ext else "a folder" for ext in builders]
        raise ValueError(f"Unsupported data file {next(iter(data_files.values()))!r}: use {accepted}.")
    builder = builders[kind]
    patterns = data_files
    if kind == "":  # folder-based builders (imagefolder) take glob patterns
        patterns = {split: os.path.join(path, "**") for split, path in data_files.items()}
    try:
        raw = load_dataset(builder, data_files=patterns, cache_dir=model_args.cache_dir, **builder_kwargs)
    except Exception as err:  # datasets names neither the file nor the line: find them
        raise diagnose_data_files(data_files, builder, err) from err
    check_splits_not_empty(raw, data_files)
    return raw


def data_sources(data_args: BaseDataArguments, splits) -> dict[str, str]:
    """Split → what it was read from, for error messages: the local file or folder, or the Hub data set.

    >>> data_sources(BaseDataArguments(train_file="train.csv"), ["train", "validation"])["validation"]
    "'train.csv' (the part held out for validation)"
    """
    if data_args.dataset_name is not None:
        name = " ".join(filter(None, [data_args.dataset_name, data_args.dataset_config_name]))
        return {split: f"the {split} split of the Hub data set {name!r}" for split in splits}
    train = getattr(data_args, "train_dir", None) or data_args.train_file
    given = {"train": train, "validation": getattr(data_args, "validation_dir", None) or data_args.validation_file}
    return {
        split: repr(given[split]) if given.get(split) else f"{train!r} (the part held out for {split})"
        for split in splits
    }


def check_data_cells(
    raw, data_args: BaseDataArguments, *, text_columns: Sequence[str], label_column: str | None = None
) -> None:
    """Refuse empty text/label cells and mixed label types before tokenization (``data_checks.check_cells``).

    Call it on the data as loaded (before :func:`split_validation`): errors then count lines in the local
    files (``--train_file``/``--validation_file``), or name the example of a Hub data set's split.

    Raises:
        DataCellError: naming the file, the line (or the example) and the fix.
    """
    files = {} if data_args.dataset_name else {"train": data_args.train_file, "validation": data_args.validation_file}
    check_cells(
        raw, text_columns=text_columns, label_column=label_column, files=files, sources=data_sources(data_args, raw)
    )


def require_columns(dataset, source: str | None = None, **columns: str | None) -> None:
    """Check that each named column exists: ``require_columns(ds, text_column_name="sentence")``.

    Args:
        dataset: the split to check.
        source: what it was read from (:func:`data_sources`), named in the error.
        **columns: flag name → column name (None: not checked).

    Raises:
        ColumnNotFoundError: naming the flag, the column, the file and the columns the data set has.
    """
    for flag, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise ColumnNotFoundError(flag, column, dataset.column_names, source)


def split_validation(raw, fraction: float, seed: int):
    """Give ``raw`` a ``"validation"`` split carved from ``"train"`` if it has none (fraction > 0)."""
    if "validation" in raw or not fraction or "train" not in raw:
        return raw
    split = raw["train"].train_test_split(test_size=fraction, seed=seed)
    raw["train"], raw["validation"] = split["train"], split["test"]
    return raw


def select_samples(dataset, max_samples: int | None):
    """The first ``max_samples`` examples (all when None)."""
    return dataset if max_samples is None else dataset.select(range(min(max_samples, len(dataset))))


def label_list(raw, label_column: str, sources: dict[str, str] | None = None) -> tuple[list[str], dict | None]:
    """Class names and the raw-label → id map (``None`` when labels already are ids of a ``ClassLabel``).

    ``sources`` (split → file, :func:`data_sources`) names the files in errors.

    Raises:
        ValueError: float labels (regression is not what these recipes do).
        UnseenLabelError: labels that only evaluation splits have (listed).
    """
    from datasets import ClassLabel

    feature = next(iter(raw.values())).features[label_column]
    if isinstance(feature, ClassLabel):
        check_labels_seen_in_training(raw, label_column, list(feature.names), sources=sources)
        return list(feature.names), None
    if getattr(feature, "dtype", "").startswith("float"):
        where = f" in {(sources or {}).get(next(iter(raw)))}" if sources else ""
        raise ValueError(
            f"Label column {label_column!r}{where} holds floats ({feature.dtype}): the recipes do classification; "
            "give class labels (ints or strings)."
        )
    check_labels_seen_in_training(raw, label_column, sources=sources)
    values = sorted({value for split in raw.values() for value in split[label_column]})
    return [str(v) for v in values], {v: i for i, v in enumerate(values)}


def image_transform(processor, *, image_column: str, label_column: str | None, num_channels: int) -> Callable:
    """A ``with_transform`` function: images → ``pixel_values`` with the processor, labels → ``labels``.

    Images are converted to grayscale for 1-channel models and to RGB otherwise.
    """
    mode = "L" if num_channels == 1 else "RGB"

    def transform(batch: dict) -> dict:
        images = [image.convert(mode) for image in batch[image_column]]
        out = {"pixel_values": processor(images, return_tensors="pt")["pixel_values"]}
        if label_column is not None and label_column in batch:
            out["labels"] = batch[label_column]
        return out

    return transform


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack transformed image examples into a batch."""
    batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples])}
    if "labels" in examples[0]:
        batch["labels"] = torch.tensor([e["labels"] for e in examples])
    return batch


def load_metric(name: str, **kwargs: Any):
    """An ``evaluate`` metric: the local script ``recipes/metrics/<name>.py`` if there is one, else ``evaluate.load``.

    ``evaluate.load("accuracy")`` fetches the metric's script from the Hub (the pip package ships no
    metric code); the local copy works offline.

    Args:
        name: a metric name, or the path of a local metric script or folder.
        **kwargs: passed to ``evaluate.load`` (``cache_dir``, ``keep_in_memory``...).

    Raises:
        MetricNotFoundError: no local script, and ``evaluate.load`` could not find it (e.g. offline).

    >>> load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]  # doctest: +ELLIPSIS
    0.666...
    """
    import evaluate

    local = METRICS_DIR / f"{name}.py"
    if local.is_file():
        return evaluate.load(str(local), **kwargs)
    try:
        return evaluate.load(name, **kwargs)
    except FileNotFoundError as err:
        raise MetricNotFoundError(name, err) from err


# -- model, trainer, training -------------------------------------------------------------------------------------


def load_model(auto_class, model_args: BaseModelArguments, training_args, **kwargs: Any):
    """Load ``model_args.model_name_or_path`` for the activation mode.

    ``lambda_gelu`` goes through the patcher (:func:`hf_lambda_gelu.from_pretrained`: GELU → λ-GELU
    with the training arguments' λ settings); the baselines load the stock GELU model.

    Raises:
        GELURemnantsError: a ReLU mode, a model with GELUs no config field controls (found with one
            forward on a dummy batch) and no ``--allow_gelu_remnants true``: refused before training.
    """
    kwargs = {**model_args.hub_kwargs(), **kwargs}
    if model_args.activation_mode == "lambda_gelu":
        model = from_pretrained(
            auto_class,
            model_args.model_name_or_path,
            lambda_config=training_args.lambda_config(),
            **kwargs,
        )
    else:
        model = auto_class.from_pretrained(model_args.model_name_or_path, **kwargs)
    if model_args.activation_mode != "gelu" and not model_args.allow_gelu_remnants:
        remnants = find_gelu_remnants(model, dummy_inputs(model))
        if remnants:
            raise GELURemnantsError(type(model).__name__, remnants)
    return model


def take_over_push(model_args: BaseModelArguments, training_args) -> HubTarget | None:
    """For ReLU modes, take ``--push_to_hub`` away from the Trainer and return where to push the release.

    The Trainer would push λ-GELU checkpoints during training and the whole output folder at the end;
    the recipe pushes the finished release instead (:func:`finish_run`). The Hub token moves to the
    returned target and out of ``training_args`` (which the Trainer pickles into every checkpoint's
    ``training_args.bin``). ``gelu`` runs keep the Trainer's push (``None`` is returned).
    """
    if model_args.activation_mode == "gelu" or not training_args.push_to_hub:
        return None
    target = HubTarget(training_args.hub_model_id, training_args.hub_token, training_args.hub_private_repo)
    training_args.push_to_hub = False
    training_args.hub_token = None  # never pickled into checkpoint-*/training_args.bin
    return target


@dataclass(frozen=True)
class HubTarget:
    """Where :func:`finish_run` uploads a ReLU release."""

    repo_id: str
    token: str | None = None
    private: bool | None = None


def build_trainer(activation_mode: str, **kwargs: Any):
    """``LambdaGELUTrainer`` for ``lambda_gelu``, the stock ``transformers.Trainer`` for the baselines."""
    from transformers import Trainer

    return (LambdaGELUTrainer if activation_mode == "lambda_gelu" else Trainer)(**kwargs)


def naive_relu_swap(trainer, metric_name: str) -> ReluizeReport:
    """Swap the trainer's GELU model to ReLU directly and measure it (the naive baseline), in place.

    :func:`hf_lambda_gelu.gelu_to_relu` does the swap (config updated: it says ``"relu"`` afterwards).
    Every rank must call it (evaluation gathers across ranks).

    Returns:
        The swap report, with ``before_swap`` / ``after_swap`` metrics and the disruption figures when
        there is an eval set.
    """
    dataset = trainer.eval_dataset
    predict = (lambda model: trainer.predict(dataset, metric_key_prefix="eval")) if dataset is not None else None
    report = measure_swap(trainer.model, gelu_to_relu, predict)
    report.settings = {"method": "naive GELU → ReLU swap (no λ learning, no hardening)"}
    if predict is not None:
        report.metric_name = metric_name
    return report


def swap_metrics(report: ReluizeReport | None, eval_keys: Sequence[str]) -> dict[str, Any]:
    """The swap part of the results, under the trainer's names (None where absent).

    ``reluize_before_<k>``, ``reluize_after_<k>`` for each eval key, ``reluize_<name>`` for :data:`RELUIZE_KEYS`.

    >>> report = ReluizeReport(after_swap={"eval_loss": 0.5}, prediction_agreement=1.0)
    >>> swap_metrics(report, ["eval_loss"])["reluize_after_eval_loss"]
    0.5
    """
    before = (report.before_swap if report else None) or {}
    after = (report.after_swap if report else None) or {}
    out: dict[str, Any] = {}
    for key in eval_keys:
        out[f"reluize_before_{key}"] = before.get(key)
        out[f"reluize_after_{key}"] = after.get(key)
    out.update({f"reluize_{key}": getattr(report, key, None) for key in RELUIZE_KEYS})
    return out


def train_and_evaluate(
    trainer, activation_mode: str, *, metric_name: str
) -> tuple[dict[str, Any], ReluizeReport | None]:
    """Train (``do_train``), swap (ReLU modes), evaluate the final model: the metrics and the swap report.

    - ``lambda_gelu``: ``LambdaGELUTrainer.train`` hardens λ (learned first only with ``hardening_start`` > 0),
      trains as ReLU and swaps; its report is returned.
    - ``naive_relu_swap``: after the (GELU) training, :func:`naive_relu_swap`.
    - ``gelu``: training only.

    Every rank must call it. The metrics follow the layout of the module docstring.
    """
    metrics: dict[str, Any] = {"activation_mode": activation_mode}
    report = None
    if trainer.args.do_train:
        result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
        metrics.update({k: v for k, v in result.metrics.items() if not k.startswith(("reluize_", "naive_swap_"))})
        metrics["train_samples"] = len(trainer.train_dataset)
        report = getattr(trainer, "reluization_report", None)
    if activation_mode == "naive_relu_swap":
        report = naive_relu_swap(trainer, metric_name)
    if trainer.eval_dataset is not None:
        final = trainer.evaluate()
        eval_keys = [k for k in summary_metrics(final) if k != "epoch"]
        metrics.update(final, eval_samples=len(trainer.eval_dataset))
        metrics.update(swap_metrics(report, eval_keys))
    return metrics, report


def with_perplexity(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add ``perplexity`` = exp(eval_loss) next to every ``*eval_loss`` (``reluize_before_perplexity``...)."""
    out = dict(metrics)
    for key, value in metrics.items():
        if key.endswith("eval_loss"):
            name = key.removesuffix("eval_loss") + "perplexity"
            out[name] = None if value is None else (math.exp(value) if value < 700 else math.inf)
    return out


def train_and_release(
    model_args: BaseModelArguments,
    training_args,
    model,
    *,
    processing_class: Any,
    train_dataset,
    eval_dataset,
    metric_name: str,
    dataset_names: Sequence[str],
    data_collator: Callable | None = None,
    compute_metrics: Callable | None = None,
    perplexity: bool = False,
) -> dict[str, Any]:
    """Steps 7–10 of every recipe's ``main()``: trainer, train/eval (and the swap), output folder, push.

    :func:`take_over_push`, :func:`build_trainer`, :func:`train_and_evaluate`, then :func:`finish_run`.
    Every rank must call it.

    Args:
        model_args: the recipe's model arguments (``activation_mode``, the base model, ``allow_gelu_remnants``).
        training_args: the ``LambdaGELUTrainingArguments`` of the run.
        model: from :func:`load_model`.
        processing_class: the tokenizer / image processor (given to the Trainer and shipped with the release).
        train_dataset: the preprocessed training split (None without ``do_train``).
        eval_dataset: the preprocessed evaluation split (None without ``do_eval``).
        metric_name: the metric the swap report leads with (``"accuracy"``, ``"loss"``).
        dataset_names: the data sets, for the card.
        data_collator: the Trainer's collator (default: the Trainer's own).
        compute_metrics: the Trainer's metric function.
        perplexity: add ``perplexity`` next to every eval loss (:func:`with_perplexity`).

    Returns:
        The metrics written to ``all_results.json``.
    """
    hub_target = take_over_push(model_args, training_args)
    trainer = build_trainer(
        model_args.activation_mode,
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing_class,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
    )
    metrics, report = train_and_evaluate(trainer, model_args.activation_mode, metric_name=metric_name)
    if perplexity:
        metrics = with_perplexity(metrics)
    finish_run(
        trainer,
        model_args.activation_mode,
        metrics=metrics,
        report=report,
        processing_class=processing_class,
        base_model=model_args.model_name_or_path,
        dataset_names=dataset_names,
        hub_target=hub_target,
        allow_gelu_remnants=model_args.allow_gelu_remnants,
    )
    return metrics


# -- output ------------------------------------------------------------------------------------------------------


def finish_run(
    trainer,
    activation_mode: str,
    *,
    metrics: dict[str, Any],
    report: ReluizeReport | None,
    processing_class: Any,
    base_model: str | None,
    dataset_names: Sequence[str] = (),
    hub_target: HubTarget | None = None,
    allow_gelu_remnants: bool = False,
) -> Path:
    """Write the output folder (model, processor, card, profile, report, ``all_results.json``) and push.

    Every rank must call it (saving and pushing synchronize); rank 0 writes.

    Args:
        trainer: the trainer of the run (its ``args.output_dir`` is the output folder).
        activation_mode: one of :data:`ACTIVATION_MODES`.
        metrics: from :func:`train_and_evaluate` (plus anything the caller adds).
        report: the swap report (ReLU modes).
        processing_class: tokenizer / image processor to ship.
        base_model: the starting checkpoint, for the card.
        dataset_names: the data sets, for the card.
        hub_target: from :func:`take_over_push` (ReLU modes with ``--push_to_hub``).
        allow_gelu_remnants: release GELUs no config field controls (``--allow_gelu_remnants``).

    Returns:
        The output folder.
    """
    output_dir = Path(trainer.args.output_dir)
    if activation_mode == "gelu":
        trainer.save_model()
        if trainer.is_world_process_zero():
            trainer.create_model_card(finetuned_from=base_model, dataset=list(dataset_names) or None)
    elif trainer.is_world_process_zero():
        # the trainer wrote these during training; save_release writes them again from the report, and
        # only files it writes itself go into the release manifest (and the upload)
        for name in (PROFILE_JSON_FILENAME, PROFILE_PLOT_FILENAME, REPORT_FILENAME):
            (output_dir / name).unlink(missing_ok=True)
        card_kwargs: dict[str, Any] = {"dataset_names": list(dataset_names)}
        if hub_target is not None:
            card_kwargs["repo_id"] = hub_target.repo_id
        save_release(
            trainer.model,
            output_dir,
            processing_class=processing_class,
            base_model=base_model,
            report=report,
            card_kwargs=card_kwargs,
            overwrite=True,
            allow_gelu_remnants=allow_gelu_remnants,
        )
    trainer.log_metrics("all", {k: v for k, v in metrics.items() if v is not None})  # null: not applicable
    trainer.save_metrics("all", metrics, combined=False)
    if hub_target is not None and trainer.is_world_process_zero():
        upload_release(output_dir, hub_target.repo_id, token=hub_target.token, private=hub_target.private)
    elif activation_mode == "gelu" and trainer.args.push_to_hub:
        trainer.push_to_hub(finetuned_from=base_model, dataset=list(dataset_names) or None)
    trainer.accelerator.wait_for_everyone()
    return output_dir


def run_recipe(main: Callable[[], Any]) -> None:
    """A recipe's ``__main__`` entry: run ``main()``; bad input ends with ONE line on stderr and exit code 1.

    Bad input is a ``ValueError`` (the package's errors name the value, the file and line, and the fix), a
    missing optional extra (the demo's scikit-learn) a ``MissingExtraError`` naming the extra, and a disk
    that fills during a checkpoint a ``CheckpointDiskFullError`` (naming the checkpoint and the free space);
    the line is printed without traceback. ``HF_LAMBDA_GELU_TRACEBACK=1`` re-raises it with its traceback.
    Then :func:`exit_if_distributed`.
    """
    try:
        main()
    except (ValueError, MissingExtraError, CheckpointDiskFullError) as err:
        if os.environ.get("HF_LAMBDA_GELU_TRACEBACK", "") not in ("", "0"):
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    exit_if_distributed()


def exit_if_distributed() -> None:
    """End a distributed worker right after its work: barrier, flush, ``os._exit(0)``.

    gloo workers sometimes abort during interpreter shutdown ("terminate called without an active
    exception") after everything is written; a launcher then reports a failure. Call it last, at the
    ``__main__`` level only: it never returns when a process group is up, and does nothing otherwise.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)

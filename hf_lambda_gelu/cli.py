"""The ``hf-lambda-gelu`` command line: ``convert``, ``reluize``, ``relufy``, ``profile``, ``push``, ``demo``,
``export``, ``sparsity`` (and ``--version``).

Every subcommand is a :class:`Command` in :data:`COMMANDS`. Errors the user can fix (missing folder, not a λ-GELU
checkpoint, no GELU to convert, a failed upload...) print one line,
``hf-lambda-gelu: error: ...``, and exit with status 1; anything else keeps its traceback. Ctrl-C prints one line
(``interrupted``, and ``nothing written`` for the commands that write a release at once) and exits with 130.

How sources, processor files, reload checks and refusals are decided: docs/design.md.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.utils
import torch
import transformers
from huggingface_hub import snapshot_download
from transformers import AutoConfig, AutoProcessor
from transformers.utils import logging as transformers_logging

from . import __version__, errors
from .activation import lambda_modules
from .calibration import calibration_batches
from .config import LambdaGELUConfig
from .config_fields import activation_fields, is_lambda_gelu_config
from .conversion import from_pretrained
from .errors import OutputDirNotEmptyError, UnhardenedSwapError
from .metrics import compute_accuracy
from .model_source import check_model_source as _source
from .model_source import check_weights
from .ops import RELU_DISTANCE_CONSTANT
from .refit import DEFAULT_REFIT_RIDGE
from .release.card import infer_pipeline_tag, resolve_target_lambda
from .release.folder import (
    PROFILE_JSON_FILENAME,
    REPORT_FILENAME,
    check_output_dir,
    check_separate_dirs,
    reluize_for_release,
    save_release,
)
from .release.gate import check_reload
from .release.plots import load_profile_json, save_profile_json, save_profile_plot
from .release.upload import upload_release
from .relufy_cli import add_relufy_arguments, run_relufy
from .relufy_data import label_ids
from .reluize import DEFAULT_RELU_TOLERANCE, ReluizeReport, exceeds_tolerance, hardness_profile, swap_and_refit
from .swap_measure import measure_swap

__all__ = ["COMMANDS", "PROG", "CLIError", "Command", "build_parser", "main"]

logger = logging.getLogger(__name__)

PROG = "hf-lambda-gelu"
#: Files that make up a tokenizer / processor (copied by ``convert``).
PROCESSOR_FILES = (
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
)
_PROCESSOR_MARKERS = (
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "preprocessor_config.json",
    "processor_config.json",
)


class CLIError(Exception):
    """A problem with the command line's input that the user can fix (printed as one line)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, an argument declarer and the function that runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    #: One command line that runs it, shown under ``--help``.
    example: str = ""
    #: A paragraph shown under the example.
    notes: str = ""
    #: Hand unrecognized flags to ``run`` as ``args.flags`` (for commands with their own parser).
    passthrough: bool = False
    #: Its output is committed at once (a release folder): an interrupted run has written nothing.
    atomic: bool = False


#: The package's own exceptions (each names the value and the fix), the CLI's, and OS errors (missing files...).
_USER_ERRORS = (
    CLIError,
    OSError,
    *(
        error
        for error in map(vars(errors).get, errors.__all__)
        if isinstance(error, type) and issubclass(error, Exception) and not issubclass(error, Warning)
    ),
)


# ----------------------------------------------------------------------------------------- helpers


def _load_config(source: str) -> Any:
    """The source's transformers config; a ``config.json`` transformers cannot read is a one-line error."""
    try:
        return AutoConfig.from_pretrained(source)
    except ValueError as err:  # "Unrecognized model in ...": no or an unknown model_type
        raise CLIError(f"{source!r} is not a transformers model folder: {err}") from None


def _check_finite_lambda(model: Any, args: argparse.Namespace) -> None:
    """Refuse to write a converted model whose λ (or λ's parameters) are not finite."""
    bad = {}
    for name, module in lambda_modules(model):
        lam = module.lambda_.detach()
        if not all(torch.isfinite(t).all() for t in (lam, *module.parameters())):
            bad[name] = lam.reshape(-1)[0].item()
    if bad:
        name, value = next(iter(bad.items()))
        given = f"--lambda-init {args.lambda_init}" + (
            f" with --lambda-temperature {args.lambda_temperature}" if args.lambda_temperature is not None else ""
        )
        raise CLIError(
            f"{given} gives λ = {value} in {len(bad)} layer(s) (first: {name}): λ must be finite in float32 (at most "
            "about 3.4e38); give a smaller --lambda-init. Nothing was written."
        )


def _processor_dir(source: str) -> Path | None:
    """Folder holding the source's tokenizer/processor files, or None if it has none."""
    folder = Path(source)
    if not folder.is_dir():
        folder = Path(snapshot_download(source, allow_patterns=[*PROCESSOR_FILES, "config.json"]))
    return folder if any((folder / name).is_file() for name in _PROCESSOR_MARKERS) else None


def _load_processor(source: str) -> Any:
    folder = _processor_dir(source)
    if folder is None:
        logger.info("%s has no tokenizer/processor files; the release ships none.", source)
        return None
    return AutoProcessor.from_pretrained(folder)


def _model_class(name: str | None, config: Any) -> Any:
    name = name or next(iter(getattr(config, "architectures", None) or []), None) or "AutoModel"
    cls = getattr(transformers, name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise CLIError(
            f"Model class {name!r} is not a transformers model class; pass --model-class with one, e.g. "
            "AutoModelForSequenceClassification or BertForMaskedLM."
        )
    return cls


def _check_empty(folder: Path, overwrite: bool) -> None:
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise CLIError(f"Destination {str(folder)!r} is not empty; choose another folder or pass --overwrite.")


def _load_lambda_checkpoint(source: str, model_class: str | None = None) -> Any:
    config = _load_config(source)
    if not is_lambda_gelu_config(config):
        raise CLIError(
            f"{source!r} is not a λ-GELU checkpoint (config activation fields: {activation_fields(config) or 'none'}); "
            f"convert it first with `{PROG} convert {source} DST`."
        )
    return _model_class(model_class, config).from_pretrained(source)


def _read_eval_file(path: str, text_column: str, label_column: str) -> tuple[list[str], list[Any]]:
    suffix = Path(path).suffix.lower()
    builders = {
        ".csv": ("csv", {}),
        ".tsv": ("csv", {"delimiter": "\t"}),
        ".json": ("json", {}),
        ".jsonl": ("json", {}),
    }
    if suffix not in builders:
        raise CLIError(f"--eval-file {path!r}: use a .csv, .tsv, .json or .jsonl file.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--eval-file {path!r} does not exist.")
    builder, options = builders[suffix]
    with tempfile.TemporaryDirectory(prefix="hf-lambda-gelu-eval-") as cache_dir:
        data = datasets.load_dataset(builder, data_files=path, split="train", cache_dir=cache_dir, **options)
        missing = [c for c in (text_column, label_column) if c not in data.column_names]
        if missing:
            raise CLIError(
                f"--eval-file {path!r} has no column(s) {missing}; its columns are {data.column_names} "
                "(choose them with --text-column / --label-column)."
            )
        return [str(t) for t in data[text_column]], list(data[label_column])


def _eval_dataset(tokenizer: Any, config: Any, args: argparse.Namespace) -> datasets.Dataset:
    """``--eval-file`` read, its labels checked against the model's, tokenized."""
    texts, raw_labels = _read_eval_file(args.eval_file, args.text_column, args.label_column)
    labels = label_ids(raw_labels, config)
    encoded = tokenizer(texts, truncation=True, max_length=args.max_length)
    return datasets.Dataset.from_dict({**encoded, "labels": labels})


def _swap_on_eval_file(
    model: Any, tokenizer: Any, data: datasets.Dataset, args: argparse.Namespace, swap: Any = reluize_for_release
) -> ReluizeReport:
    """ReLU-ize ``model`` and measure the swap on ``data`` with transformers' ``Trainer``: the report."""
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory(prefix="hf-lambda-gelu-eval-") as output_dir:
        eval_args = TrainingArguments(
            output_dir=output_dir,
            per_device_eval_batch_size=args.batch_size,
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=torch.accelerator.is_available(),  # pinning without one only warns
        )
        trainer = Trainer(model=model, args=eval_args, processing_class=tokenizer, compute_metrics=compute_accuracy)
        report = measure_swap(model, swap, lambda m: trainer.predict(data, metric_key_prefix="eval"))
    report.metric_name = "accuracy"
    report.eval_dataset = f"{Path(args.eval_file).name} (local file)"
    return report


def _lambda_arg(text: str) -> float:
    value = float(text)
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"λ must be ≥ 1 (λ = 1 is GELU), got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be > 0 and finite, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


# ---------------------------------------------------------------------------------------- commands


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="GELU checkpoint: a local folder or a Hub model id.")
    parser.add_argument("dst", help="Folder to write the λ-GELU checkpoint to.")
    parser.add_argument("--lambda-init", type=_lambda_arg, default=None, help="Initial λ ≥ 1 (default 1: exact GELU).")
    parser.add_argument(
        "--lambda-temperature", type=_positive_float, default=None, help="Softplus temperature τ > 0 (default 0.1)."
    )
    parser.add_argument("--lambda-per-channel", action="store_true", help="One λ per channel instead of one per layer.")
    parser.add_argument(
        "--model-class",
        default=None,
        help="transformers class to load with, e.g. AutoModelForSequenceClassification (default: the class named "
        "in the checkpoint's config.architectures, else AutoModel).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty DST.")


def _convert(args: argparse.Namespace) -> None:
    source = _source(args.src)
    destination = Path(args.dst)
    check_separate_dirs(source, destination)
    _check_empty(destination, args.overwrite)
    settings = {name: getattr(args, name) for name in ("lambda_init", "lambda_temperature", "lambda_per_channel")}
    model_class = _model_class(args.model_class, _load_config(source))
    lambda_config = LambdaGELUConfig(**{name: value for name, value in settings.items() if value is not None})
    model = from_pretrained(model_class, source, lambda_config=lambda_config)
    _check_finite_lambda(model, args)
    model.save_pretrained(destination)
    check_reload(model, destination, with_package=True)  # λ must come back from the saved checkpoint
    processor_dir = _processor_dir(source)
    copied = [n for n in PROCESSOR_FILES if processor_dir and (processor_dir / n).is_file()]
    for name in copied:
        shutil.copyfile(processor_dir / name, destination / name)
    layers = len(lambda_modules(model))
    print(f"Converted {source} ({type(model).__name__}, {layers} λ-GELU layers) -> {destination}")
    print(f"Tokenizer/processor files copied: {', '.join(copied) if copied else 'none found'}")


def _reluize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="λ-GELU checkpoint (trained and hardened): a local folder or a Hub model id.")
    parser.add_argument("dst", help="Release folder to write (model, card, profile, report).")
    group = parser.add_argument_group("evaluation of the swap (sequence classification)")
    group.add_argument("--eval-file", default=None, help="CSV/TSV/JSON(L) file to measure the swap on.")
    group.add_argument("--text-column", default="text", help="Text column of the eval file (default: text).")
    group.add_argument("--label-column", default="label", help="Label column of the eval file (default: label).")
    group.add_argument(
        "--max-length", type=_positive_int, default=128, help="Tokenizer truncation length (default: 128)."
    )
    group.add_argument("--batch-size", type=_positive_int, default=32, help="Evaluation batch size (default: 32).")
    card = parser.add_argument_group("model card")
    card.add_argument("--base-model", default=None, help="Checkpoint training started from (Hub id or name).")
    card.add_argument("--dataset", action="append", default=None, help="Training data set (repeatable).")
    card.add_argument("--repo-id", default=None, help="Hub repo the release is meant for (loading snippet).")
    card.add_argument("--model-name", default=None, help="Title of the card and model-index name.")
    card.add_argument("--license", default=None, help="License id for the card, e.g. apache-2.0.")
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty DST that is not a release.")
    parser.add_argument(
        "--allow-unhardened",
        action="store_true",
        help=f"Release even if the swap bound c/min λ exceeds ε = {DEFAULT_RELU_TOLERANCE:g} (λ never hardened): a "
        "naive GELU → ReLU swap, and the model card says so.",
    )
    refit = parser.add_argument_group("refit instead of hardening (a model whose λ was never hardened)")
    refit.add_argument(
        "--calibration-data",
        default=None,
        help="Unlabeled inputs (.txt/.csv/.tsv/.jsonl or an image folder) on which each MLP down-projection is refit "
        "by least squares after the swap, so that the ReLU model reproduces the λ-GELU model's layer outputs. It "
        "takes the place of --allow-unhardened, and the card says 'refit'.",
    )
    refit.add_argument("--calibration-size", type=_positive_int, default=512, help="Inputs of --calibration-data used (a seeded random subset; default: 512).")  # fmt: skip
    refit.add_argument("--refit-ridge", type=_nonnegative_float, default=DEFAULT_REFIT_RIDGE, help=f"Ridge of the refit, relative to the mean diagonal of XᵀX (default: {DEFAULT_REFIT_RIDGE:g}).")  # fmt: skip
    parser.add_argument(
        "--allow-gelu-remnants",
        action="store_true",
        help="Release a model that keeps GELUs no config field controls (hard-coded heads, functional calls); the "
        "report and the model card list them.",
    )


def _refuse_unhardened(model: Any, allowed: bool) -> None:
    bound = RELU_DISTANCE_CONSTANT / min(hardness_profile(model).values())
    if exceeds_tolerance(bound, DEFAULT_RELU_TOLERANCE) and not allowed:
        raise UnhardenedSwapError(bound, DEFAULT_RELU_TOLERANCE)


def _reluize(args: argparse.Namespace) -> None:
    source = _source(args.src)
    destination = Path(args.dst)
    check_separate_dirs(source, destination)
    check_output_dir(destination, overwrite=args.overwrite)
    model = _load_lambda_checkpoint(source)
    processor = _load_processor(source)
    swap = reluize_for_release
    if args.calibration_data:
        if processor is None:
            raise CLIError(f"--calibration-data needs a tokenizer or image processor, and {source!r} has none.")
        batches = calibration_batches(
            args.calibration_data, processor, size=args.calibration_size, max_length=args.max_length,
            batch_size=args.batch_size, text_column=args.text_column,
        )  # fmt: skip
        swap = functools.partial(swap_and_refit, swap=reluize_for_release, calibration=batches, ridge=args.refit_ridge)
    if args.eval_file:
        if infer_pipeline_tag(model) != "text-classification":
            raise CLIError(f"--eval-file evaluates sequence classifiers; {source!r} is a {type(model).__name__}.")
        if processor is None:
            raise CLIError(f"--eval-file needs a tokenizer, and {source!r} has no tokenizer files.")
        data = _eval_dataset(processor, model.config, args)
        _refuse_unhardened(model, args.allow_unhardened or bool(args.calibration_data))
        report = _swap_on_eval_file(model, processor, data, args, swap)
    else:
        _refuse_unhardened(model, args.allow_unhardened or bool(args.calibration_data))
        report = swap(model)
    card_kwargs = {
        "dataset_names": args.dataset,
        "repo_id": args.repo_id,
        "model_name": args.model_name,
        "license": args.license,
    }
    save_release(
        model,
        destination,
        processing_class=processor,
        base_model=args.base_model,
        report=report,
        card_kwargs=card_kwargs,
        overwrite=args.overwrite,
        allow_gelu_remnants=args.allow_gelu_remnants,
    )
    print(f"Wrote the ReLU release of {source} to {destination}")
    print(f"Worst-case per-activation change of the swap (c/min λ): {report.max_error_bound:.3g}")
    if args.eval_file:
        b, a = report.before_swap["eval_accuracy"], report.after_swap["eval_accuracy"]
        print(
            f"accuracy {b:.4f} -> {a:.4f}; max |Δlogits| {report.max_abs_logit_diff:.3g}; "
            f"prediction agreement {report.prediction_agreement:.2%}"
        )


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "src", help="λ-GELU checkpoint (folder or Hub id), or a release folder with hardness_profile.json."
    )
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="Also write the profile plot (PNG).")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="Also write the profile as JSON.")
    parser.add_argument("--target-lambda", type=_lambda_arg, default=None, help="Target λ* to draw in the plot.")


def _profile(args: argparse.Namespace) -> None:
    source = _source(args.src, markers=("config.json", PROFILE_JSON_FILENAME))
    target = args.target_lambda
    saved = Path(source) / PROFILE_JSON_FILENAME
    if saved.is_file():
        profile = load_profile_json(saved)
        report_path = Path(source) / REPORT_FILENAME
        if target is None and report_path.is_file():
            target = resolve_target_lambda(json.loads(report_path.read_text(encoding="utf-8")))
    else:
        profile = hardness_profile(_load_lambda_checkpoint(source))
    width = max(len("layer"), *map(len, profile))
    print(f"{'layer':<{width}}  {'λ':>12}  {'c/λ':>10}")
    for name, lam in profile.items():
        print(f"{name:<{width}}  {lam:>12.6g}  {RELU_DISTANCE_CONSTANT / lam:>10.3g}")
    if args.plot:
        print(f"Plot: {save_profile_plot(profile, args.plot, target_lambda=target)}")
    if args.json:
        print(f"JSON: {save_profile_json(profile, args.json, target_lambda=target)}")


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="Release folder written by `hf-lambda-gelu reluize` (or save_release).")
    parser.add_argument("repo_id", help="Hub model repo, e.g. user/bert-relu (created if missing).")
    parser.add_argument("--private", action="store_true", help="Create the repo private.")
    parser.add_argument(
        "--token",
        default=None,
        help="Hub token (default: $HF_TOKEN or the stored `hf auth login`; prefer those, a command-line token is "
        "visible to other local users).",
    )
    parser.add_argument("--commit-message", default=None, help="Commit message.")
    parser.add_argument(
        "--keep-remote-files",
        action="store_true",
        help="Keep files in the Hub repo that are not part of this release (default: delete them).",
    )


def _push(args: argparse.Namespace) -> None:
    if Path(args.dir).is_dir():
        check_weights(Path(args.dir))
    url = upload_release(
        args.dir,
        args.repo_id,
        private=True if args.private else None,
        token=args.token,
        commit_message=args.commit_message,
        delete_stale=not args.keep_remote_files,
    )
    print(f"Uploaded {args.dir} to {args.repo_id}: {url}")


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments of its own: the demo parses the rest (see the command's notes)."""


def _demo(args: argparse.Namespace) -> None:
    from . import demo

    transformers_logging.enable_progress_bar()  # the demo shows the Trainer's progress bars
    datasets.enable_progress_bars()
    demo.main(args.flags)


# ------------------------------------------------------------------ deployment: export and sparsity


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release", help="ReLU release folder (`hf-lambda-gelu reluize` output) or ReLU checkpoint.")
    parser.add_argument("out", help="Folder for model.onnx and onnx_export_audit.json.")
    parser.add_argument(
        "--opset", type=_positive_int, default=None, help="ONNX opset, ≥ 18 (default: the exporter's, 20)."
    )
    parser.add_argument(
        "--atol", type=_positive_float, default=1e-4, help="Max |Δ| of ONNX Runtime vs PyTorch (default 1e-4)."
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="Also write model.int8.onnx (ONNX Runtime dynamic int8 quantization) and audit it.",
    )
    parser.add_argument(
        "--no-update-release",
        action="store_true",
        help="Do not write the audit into the release folder and its model card.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Write into a non-empty OUT that is not an export.")


def _check_export_dir(folder: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``folder`` that holds anything but an earlier export's files (unless ``overwrite``)."""
    from .release.export import AUDIT_FILENAME, INT8_FILENAME, ONNX_FILENAME

    own = {ONNX_FILENAME, INT8_FILENAME, AUDIT_FILENAME, f"{ONNX_FILENAME}.data", f"{INT8_FILENAME}.data"}
    others = sorted(set(os.listdir(folder)) - own) if folder.is_dir() and not overwrite else []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputDirNotEmptyError(folder, f"holds {shown}, not an earlier ONNX export", "--overwrite")


def _export(args: argparse.Namespace) -> None:
    from .release.export import export_release, require_onnx

    require_onnx()
    release = _source(args.release)
    check_separate_dirs(release, args.out)
    _check_export_dir(Path(args.out), args.overwrite)
    try:
        audit = export_release(
            release,
            args.out,
            opset=args.opset,
            atol=args.atol,
            int8=args.int8,
            update_release=not args.no_update_release,
        )
    except ValueError as err:  # transformers' own (a config it cannot read...); the package's are user errors
        raise CLIError(str(err)) from err
    parity = audit["parity"]
    print(
        f"Exported {args.release} ({audit['model_class']}) -> {Path(args.out) / 'model.onnx'} (opset {audit['opset']})"
    )
    print(f"GELU ops ({', '.join(audit['forbidden_ops'])}): {audit['forbidden_ops_found'] or 'none'}")
    print(f"MLP activations as Relu: {sum(v == ['Relu'] for v in audit['mlp_activations'].values())} of "
          f"{len(audit['mlp_activations'])}; other activations: {audit['other_activations'] or 'none'}")  # fmt: skip
    print(f"ONNX Runtime vs PyTorch: max |Δ {audit['output']}| = {parity['max_abs_diff']:.3g} (≤ {parity['atol']:g})")
    if audit["int8"]:
        int8 = audit["int8"]
        print(f"int8: {Path(args.out) / int8['onnx_file']}; max |Δ| vs PyTorch {int8['max_abs_diff_vs_pytorch']:.3g}, "
              f"argmax agreement {int8['argmax_agreement']:.0%} on the parity batch")  # fmt: skip


def _read_texts(path: Path, column: str) -> list[str]:
    """Texts of a .txt (one per line), .csv/.tsv or .json/.jsonl file (the ``column`` field)."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        raise CLIError(f"--data {str(path)!r}: use a .txt, .csv, .tsv, .json or .jsonl file, or a folder of images.")
    if not rows or not isinstance(rows, list) or column not in rows[0]:
        found = sorted(rows[0]) if rows and isinstance(rows, list) and isinstance(rows[0], dict) else []
        raise CLIError(
            f"--data {str(path)!r} has no {column!r} column (columns: {found}); choose it with --text-column."
        )
    return [str(row[column]) for row in rows]


def _sparsity_batches(args: argparse.Namespace, processor: Any) -> list[dict[str, torch.Tensor]]:
    """``--data`` prepared by the model's processor: texts through the tokenizer, an image folder through the image processor."""
    data = Path(args.data)
    if not data.exists():
        raise FileNotFoundError(f"--data {args.data!r} does not exist.")
    if processor is None:
        raise CLIError(f"{args.model!r} has no tokenizer or image processor files to prepare --data with.")
    if data.is_dir():
        from PIL import Image

        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
        if not files:
            raise CLIError(f"--data folder {args.data!r} holds no .png/.jpg/.jpeg/.bmp/.webp image.")
        files = files[: args.max_examples]
        return [
            dict(
                processor(
                    images=[Image.open(p).convert("RGB") for p in files[i : i + args.batch_size]], return_tensors="pt"
                )
            )
            for i in range(0, len(files), args.batch_size)
        ]
    texts = _read_texts(data, args.text_column)[: args.max_examples]
    if getattr(processor, "pad_token", "") is None:
        processor.pad_token = processor.eos_token  # GPT-2-style tokenizers: padding is masked out anyway
    return [
        dict(
            processor(
                texts[i : i + args.batch_size],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            )
        )
        for i in range(0, len(texts), args.batch_size)
    ]


def _sparsity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ReLU model: a release folder (updated with the result) or checkpoint.")
    parser.add_argument("--data", required=True, help="Text file (.txt/.csv/.tsv/.json/.jsonl) or a folder of images.")
    parser.add_argument(
        "--text-column", default="text", help="Text column of a .csv/.tsv/.json(l) file (default: text)."
    )
    parser.add_argument("--max-length", type=_positive_int, default=128, help="Tokenizer truncation (default: 128).")
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        help="Batch size (default: 32): the 'whole batch' sparsity depends on it.",
    )
    parser.add_argument(
        "--max-examples", type=_positive_int, default=1024, help="Use the first N examples (default: 1024)."
    )
    parser.add_argument("--json", default=None, metavar="OUT.json", help="Also write the report as JSON.")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="Also write the plot.")
    parser.add_argument("--no-update-release", action="store_true", help="Do not write into the release folder.")


def _sparsity(args: argparse.Namespace) -> None:
    from .errors import ReluModelRequiredError
    from .release.export import load_relu_model
    from .release.folder import MANIFEST_FILENAME
    from .release.sparsity import SparsityReport, add_sparsity_to_release, measure_sparsity, save_sparsity_plot

    source = _source(args.model)
    try:
        model, processor = load_relu_model(source, "measuring activation sparsity")
        batches = _sparsity_batches(args, processor)
        examples = sum(len(next(iter(batch.values()))) for batch in batches)
        report = measure_sparsity(model, batches, data=f"`{Path(args.data).name}` ({examples} examples)")
    except (ReluModelRequiredError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(f"Activation sparsity of {source} over {report.tokens} tokens (batches of {report.batch_size}):")
    width = [
        max(len(str(r[i])) for r in [SparsityReport.HEADER, *report.rows()]) for i in range(len(SparsityReport.HEADER))
    ]
    for row in [SparsityReport.HEADER, *report.rows()]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, width)).rstrip())
    print(f"mean over layers: {100 * report.mean_token_sparsity:.1f} % zeros per token, "
          f"{100 * report.mean_aggregated_sparsity:.1f} % zero for a whole batch")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"JSON: {args.json}")
    if args.plot:
        print(f"Plot: {save_sparsity_plot(report, args.plot)}")
    if not args.no_update_release and (Path(source) / MANIFEST_FILENAME).is_file():
        names = add_sparsity_to_release(report, source)
        print(f"Added {', '.join(names)} and a card section to the release {source}")


#: relufy's expected run time on a CPU, from benchmarks/README.md §6b (MiniLM, batch 8, one epoch, mean of 3 seeds:
#: sentiment 5,784 inputs in 203 s, Debian 2,461 in 121 s, the embedder's 1,600 long texts in 205 s).
RELUFY_RUN_TIME = (
    "Run time for all-MiniLM-L6-v2 on a shared 2-core CPU: the refit alone (the default) about 6-22 s on its 512 "
    "calibration inputs, one thread (benchmarks/README.md §6d); distilling (--epochs) about 35-50 s per 1,000 short texts per "
    "epoch (batch 8), about 130 s per 1,000 long texts (§6b); a GPU is much faster. The first steps of a "
    "distillation print an estimate for your run."
)

#: Subcommands by name, in ``--help`` order.
COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "convert",
            "Convert a GELU checkpoint to λ-GELU (λ = 1: same outputs).",
            _convert_arguments,
            _convert,
            example="hf-lambda-gelu convert google-bert/bert-base-uncased bert-lambda-gelu",
        ),
        Command(
            "reluize",
            "Swap a trained λ-GELU checkpoint to ReLU and write a release folder.",
            _reluize_arguments,
            _reluize,
            example="hf-lambda-gelu reluize my-lambda-gelu-run my-release --eval-file val.csv",
            atomic=True,
        ),
        Command(
            "profile",
            "Print the hardness profile (λ per layer and its bound c/λ).",
            _profile_arguments,
            _profile,
            example="hf-lambda-gelu profile my-lambda-gelu-run --plot profile.png",
        ),
        Command(
            "push",
            "Upload a release folder to the Hugging Face Hub.",
            _push_arguments,
            _push,
            example="hf-lambda-gelu push my-release me/bert-relu --private",
        ),
        Command(
            "demo",
            "Run the offline demo: all-MiniLM-L6-v2 on VADER sentiment, GELU fine-tune, its naive ReLU swap and "
            "its relufied ReLU twin (no labels) vs the λ-GELU road to a ReLU release.",
            _demo_arguments,
            _demo,
            example="HF_HUB_OFFLINE=1 hf-lambda-gelu demo --output_dir lambda_gelu_demo",
            notes="Other flags go to the demo: --output_dir, --quick, --model_name_or_path, and every "
            "LambdaGELUTrainingArguments field as --name VALUE (e.g. --max_steps 300 --distill_alpha 0).",
            passthrough=True,
        ),
        Command(
            "export",
            "Export a ReLU release to ONNX and audit the graph (no Erf/GELU).",
            _export_arguments,
            _export,
            example="hf-lambda-gelu export my-release my-release-onnx --int8",
        ),
        Command(
            "relufy",
            "Make a ReLU twin of a trained GELU model by distilling to it on unlabeled data; write a release.",
            add_relufy_arguments,
            run_relufy,
            example="hf-lambda-gelu relufy my-gelu-model my-relu-twin --data unlabeled.txt",
            notes=RELUFY_RUN_TIME,
            atomic=True,
        ),
        Command(
            "sparsity",
            "Measure the activation sparsity of a ReLU model on real inputs.",
            _sparsity_arguments,
            _sparsity,
            example="hf-lambda-gelu sparsity my-release --data texts.txt",
        ),
    )
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (unless it says it already, or the default is unset / a switch's
    off), and the epilog keeps its lines (the example)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._StoreTrueAction)
        if "default" in text.lower() or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


# -------------------------------------------------------------------------------------------- main


def _epilog(command: Command) -> str | None:
    """The example and the notes of a subcommand's ``--help``."""
    parts = [f"example:\n  {command.example}" if command.example else "", textwrap.fill(command.notes, 100)]
    return "\n\n".join(part for part in parts if part) or None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand.

    >>> build_parser().parse_args(["push", "release", "me/bert-relu"]).repo_id
    'me/bert-relu'
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="λ-GELU for Hugging Face models: convert GELU checkpoints, ReLU-ize trained ones, publish.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log progress (INFO level).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        sub = subcommands.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=_epilog(command),
            formatter_class=HelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def _quiet_progress_bars() -> None:
    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-lambda-gelu`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Args:
        argv: the arguments after the program name.

    >>> main(["profile", "my-lambda-gelu-checkpoint"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not COMMANDS[args.command].passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.flags = extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format=f"{PROG}: %(message)s")
    if not args.verbose:
        _quiet_progress_bars()
    try:
        args.run(args)
    except _USER_ERRORS as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print(f"{PROG}: interrupted{', nothing written' if COMMANDS[args.command].atomic else ''}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

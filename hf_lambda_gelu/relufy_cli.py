"""``hf-lambda-gelu relufy MODEL_DIR OUT_DIR --data FILE``: a ReLU twin of a trained GELU model, as a release folder.

On many devices: ``accelerate launch [--config_file recipes/configs/...] -m hf_lambda_gelu.cli relufy ...`` or
``torchrun --nproc_per_node N -m hf_lambda_gelu.cli relufy ...`` (DDP; with an FSDP2 config the teacher is sharded
like the student). ``--batch-size`` is per process. Every rank reads the data and runs the same checks; rank 0
alone writes the release and prints.

Everything that can be checked is checked before training (the model has a GELU that a config field
controls, the data files, the eval set's size, the pooling, an empty or previous-release OUT_DIR), so a
bad input costs one line and writes nothing. Without ``--eval-data`` the last tenth of ``--data`` (of its first
``--max-examples``) is held out for the fidelity report and not trained on.

Text data is read lazily (:mod:`hf_lambda_gelu.relufy_corpus`): checked a line at a time into memory-mapped Arrow
files in a temporary folder of the run (TMPDIR), tokenized with ``Dataset.map``; a causal LM's training texts
are packed into blocks of ``--max-length`` unless ``--no-packing``. Image folders are read as before, in memory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import AutoImageProcessor, AutoTokenizer

from .errors import DataFileError, InvalidInputError, InvalidSettingError
from .fidelity import NEIGHBOURS, Pooling, model_kind
from .model_source import load_model, model_folder
from .release.folder import check_output_dir, check_separate_dirs
from .release.twin import save_twin_release
from .relufy import ROADS, RelufyArguments, relufy
from .relufy_corpus import TEXT_COLUMN, read_corpus, tokenize_corpus
from .relufy_data import Examples, label_ids, load_pooling, read_examples
from .relufy_run import DEFAULT_SAVE_STEPS, RELUFY_TEMP_PREFIX, work_folder
from .temp_dirs import locked_temp_dir

__all__ = ["RELUFY_TEMP_PREFIX", "add_relufy_arguments", "run_relufy"]

logger = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.1
#: Arguments that do not change the twin: a rerun that differs only in these still resumes.
_NOT_THE_RUN = ("run", "flags", "command", "verbose", "out_dir", "overwrite", "output_dir", "save_steps")


def _zero_or(positive: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: 0, or what ``positive`` accepts (a zero-step run is refused later, by road)."""

    def parse(text: str) -> float:
        return 0 if float(text) == 0 else positive(text)

    parse.__name__ = positive.__name__
    return parse


def add_relufy_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import _nonnegative_float, _positive_float, _positive_int  # cli imports this module: read once loaded

    parser.add_argument(
        "model_dir", help="The trained GELU model: a local folder or a Hub id (a SentenceTransformer too)."
    )
    parser.add_argument("--revision", help="Branch, tag or commit of a Hub id (default: main).")
    parser.add_argument("out_dir", help="The release folder to write (new, empty, or a previous release).")
    parser.add_argument("--data", required=True, help="Unlabeled inputs: .txt (a line each), .csv/.tsv/.jsonl, or an image folder.")  # fmt: skip
    parser.add_argument("--eval-data", help="Held-out inputs for the fidelity report (default: the last tenth of --data).")  # fmt: skip
    parser.add_argument("--text-column", default="text", help="Column with the text (CSV/JSONL).")
    parser.add_argument("--label-column", help="Column with labels: accuracy in the report; training uses them only with --task-alpha > 0.")  # fmt: skip
    parser.add_argument("--max-steps", type=_zero_or(_positive_int), help="Training steps (default: --epochs of --data; 0: --road refit only).")  # fmt: skip
    parser.add_argument("--epochs", type=_zero_or(_positive_float), default=None, help="Epochs of --data when --max-steps is not given (default: 0 on --road refit, the refit alone; 1 on the other roads).")  # fmt: skip
    parser.add_argument("--road", choices=ROADS, default=RelufyArguments.road, help="refit: swap, then a least-squares refit of each MLP down-projection on --calibration-size inputs (no training unless --epochs/--max-steps ask for distillation after it); swap: swap, then distil; lambda: λ hardened to λ* while distilling.")  # fmt: skip
    parser.add_argument("--calibration-size", type=_positive_int, default=RelufyArguments.calibration_size, help="--road refit: inputs of --data that calibrate the refit (a seeded random subset).")  # fmt: skip
    parser.add_argument("--refit-ridge", type=_nonnegative_float, default=RelufyArguments.refit_ridge, help="--road refit: ridge relative to the mean diagonal of XᵀX.")  # fmt: skip
    parser.add_argument("--learning-rate", type=_zero_or(_positive_float), default=RelufyArguments.learning_rate, help="Peak learning rate (linear decay).")  # fmt: skip
    parser.add_argument("--batch-size", type=_positive_int, default=RelufyArguments.per_device_train_batch_size, help="Inputs per step.")  # fmt: skip
    parser.add_argument("--max-length", type=_positive_int, default=128, help="Tokens per text (truncation; at most the model's positions); a causal LM's block when packing.")  # fmt: skip
    parser.add_argument("--max-examples", type=_positive_int, help="Read only the first N inputs of --data (the held-out tenth, without --eval-data, is the last tenth of these N).")  # fmt: skip
    parser.add_argument("--no-packing", action="store_true", help="Causal LMs: one example a line, truncated, instead of packing (the default: the texts concatenated and cut into blocks of --max-length tokens).")  # fmt: skip
    parser.add_argument("--task-alpha", type=_zero_or(_positive_float), default=0.0, help="Weight of the task loss (needs --label-column).")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42, help="Seed of the data order (and any random init).")
    parser.add_argument(
        "--overwrite", action="store_true", help="Write into a folder that holds other files (not a release)."
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bf16 mixed precision (student and teacher; CPU too).")
    precision.add_argument("--fp16", action="store_true", help="fp16 mixed precision (a GPU).")
    parser.add_argument("--output-dir", help="Work folder that keeps checkpoints; rerunning the same command resumes from the last one (default: a temporary folder, no checkpoints).")  # fmt: skip
    parser.add_argument("--save-steps", type=_positive_int, default=DEFAULT_SAVE_STEPS, help="With --output-dir: steps between checkpoints (the end is saved too; the last one is kept).")  # fmt: skip


def _model_config(folder: Path, max_length: int) -> tuple[Any, Pooling | None]:
    """The model folder (local, or the Hub snapshot) checked: config.json, its sentence-transformers files, and
    --max-length against its positions (:func:`hf_lambda_gelu.model_source.model_folder` checked the weights)."""
    from .cli import _load_config  # cli imports this module

    pooling = load_pooling(folder)
    config = _load_config(str(folder))
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if positions and max_length > positions:
        raise InvalidSettingError(
            "--max-length", max_length, f"the model has {positions} positions: give 1..{positions}."
        )
    return config, pooling


def _check_changes_weights(args: argparse.Namespace) -> None:
    """Refuse a run that cannot change the weights (zero steps or rate 0), except the training-free refit road."""
    if args.road == "refit":
        return
    zero = [("--max-steps", args.max_steps), ("--learning-rate", args.learning_rate)]
    if args.max_steps is None:
        zero.append(("--epochs", args.epochs))
    for flag, value in zero:
        if value == 0:
            raise InvalidSettingError(
                flag,
                value,
                f"on the {args.road!r} road it leaves the twin the naive GELU → ReLU swap, not distilled; give a value "
                "> 0, or use --road refit for the training-free refit.",
            )


def _image(path: str, processor: Any) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as err:
        raise DataFileError(path, f"it cannot be read as an image ({err})", "replace or remove it") from None


def _processor(model_dir: Path, is_image: bool) -> Any:
    return (AutoImageProcessor if is_image else AutoTokenizer).from_pretrained(model_dir)


def _encode_images(examples: Examples, processor: Any, config: Any, path: str) -> list[dict]:
    items = [{"pixel_values": _image(image_path, processor)} for image_path in examples.inputs]
    if examples.labels is not None:
        try:
            ids = label_ids(examples.labels, config)
        except InvalidInputError as err:
            raise DataFileError(path, str(err).rstrip("."), "fix the labels") from None
        for item, label in zip(items, ids):
            item["labels"] = label
    return items


Data = datasets.Dataset | Examples  # a text corpus (memory-mapped), or an image folder's paths


def _read(path: str, args: argparse.Namespace, label_column: str | None, config: Any, cache: str, cap: int | None) -> Data:  # fmt: skip
    """A data file as a checked, memory-mapped corpus (labels as ids), or an image folder; its first ``cap`` inputs."""
    if not Path(path).is_dir():
        return read_corpus(path, cache, text_column=args.text_column, label_column=label_column, config=config,
                           max_examples=cap, progress=sys.stderr.isatty())  # fmt: skip
    images = read_examples(path, text_column=args.text_column, label_column=label_column)
    return Examples(images.inputs[:cap], images.labels and images.labels[:cap], is_image=True)


def _split(data: Data, path: str) -> tuple[Data, Data]:
    """``(train, held_out)``: the last tenth of ``data`` held out, never trained on."""
    n = len(data)
    cut = n - max(1, int(n * HELD_OUT_FRACTION))
    if cut == 0:
        raise DataFileError(path, "one example cannot be both trained on and held out", "give more data")
    if isinstance(data, Examples):
        return tuple(Examples(data.inputs[part], data.labels and data.labels[part], True) for part in (slice(cut), slice(cut, n)))  # fmt: skip
    return data.select(range(cut)), data.select(range(cut, n))


def _encode(data: Data, processor: Any, config: Any, path: str, max_length: int, packing: bool = False) -> Any:
    """Model inputs: the corpus tokenized (packed into blocks when ``packing``), or the images processed."""
    if isinstance(data, Examples):
        return _encode_images(data, processor, config, path)
    encoded = tokenize_corpus(data, processor, max_length=max_length, packing=packing, progress=sys.stderr.isatty())
    if packing and not len(encoded):
        raise DataFileError(
            path,
            f"packed into blocks of {max_length} tokens, its {len(data):,} training texts leave no whole block",
            "give more text, a smaller --max-length, or --no-packing",
        )
    return encoded


def _collator(processor: Any, is_image: bool) -> Any:
    if is_image:
        return transformers.default_data_collator
    if processor.pad_token is None:  # GPT-2-style tokenizers: pad with EOS (the mask hides it)
        processor.pad_token = processor.eos_token
    return transformers.DataCollatorWithPadding(processor)


def run_relufy(args: argparse.Namespace) -> None:
    """The ``relufy`` subcommand: check every input, distil, write the release and print the fidelity table."""
    out_dir = Path(args.out_dir)
    _check_changes_weights(args)
    if Path(args.model_dir).expanduser().is_dir():
        check_separate_dirs(args.model_dir, out_dir)
    check_output_dir(out_dir, overwrite=args.overwrite)
    if args.output_dir and Path(args.output_dir).resolve() == out_dir.resolve():
        raise InvalidSettingError(
            "--output-dir", args.output_dir, "the work folder cannot be OUT_DIR; give another one."
        )
    folder = model_folder(args.model_dir, revision=args.revision)  # a Hub id: its snapshot, downloaded once
    config, pooling = _model_config(folder, args.max_length)
    if args.task_alpha > 0 and not args.label_column:
        raise InvalidSettingError("--task-alpha", args.task_alpha, "the task loss needs labels: add --label-column.")
    with locked_temp_dir(RELUFY_TEMP_PREFIX) as cache:  # the corpus's Arrow files, removed when the run ends
        _train_and_release(args, folder, config, pooling, cache)


def _train_and_release(args: argparse.Namespace, folder: Path, config: Any, pooling: Pooling | None, cache: str) -> None:  # fmt: skip
    """Read and encode the data (Arrow files under ``cache``), distil, write the release and print the fidelity table."""
    out_dir = Path(args.out_dir)
    # --data's labels are read for the task loss, or for the accuracy of the tenth held out from it
    data_labels = args.label_column if args.task_alpha > 0 or not args.eval_data else None
    data = _read(args.data, args, data_labels, config, cache, args.max_examples)
    if args.eval_data:
        held_out = _read(args.eval_data, args, args.label_column, config, cache, None)
    else:
        data, held_out = _split(data, args.data)
    model = load_model(str(folder)).model
    kind = model_kind(model)
    if kind == "embedder" and len(held_out) <= NEIGHBOURS:
        raise DataFileError(
            args.eval_data or args.data,
            f"{len(held_out)} held-out inputs; the neighbour agreement needs more than {NEIGHBOURS}",
            "give a larger --eval-data",
        )
    is_image = isinstance(data, Examples)
    packing = kind == "causal_lm" and not args.no_packing and not is_image
    if packing and args.task_alpha > 0:
        raise InvalidSettingError(
            "--task-alpha", args.task_alpha, "the task loss needs one example a line: add --no-packing."
        )
    processor = _processor(folder, is_image)
    if args.task_alpha == 0:  # label-free: the training data's labels are not used
        data = (
            Examples(data.inputs, None, True)
            if is_image
            else data.remove_columns([c for c in data.column_names if c != TEXT_COLUMN])
        )
    train = _encode(data, processor, model.config, args.data, args.max_length, packing)
    evals = _encode(held_out, processor, model.config, args.eval_data or args.data, args.max_length)
    command = {k: v for k, v in vars(args).items() if k not in _NOT_THE_RUN}
    with work_folder(args.output_dir, command, args.save_steps) as work:
        training_args = RelufyArguments(
            output_dir=work.path,
            resume_from_checkpoint=work.resume_from,
            road=args.road,
            calibration_size=args.calibration_size,
            refit_ridge=args.refit_ridge,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            max_steps=-1 if args.max_steps is None else args.max_steps,
            num_train_epochs=args.epochs,  # None: RelufyArguments' default for the road
            task_alpha=args.task_alpha,
            seed=args.seed,
            **work.save_settings,
            logging_strategy="no",
            report_to="none",
            bf16=args.bf16,
            fp16=args.fp16,
            use_cpu=not torch.cuda.is_available(),
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        twin, report = relufy(
            model, train, training_args, eval_dataset=evals, data_collator=_collator(processor, is_image),
            pooling=pooling,
        )  # fmt: skip
    report.pooling = pooling.mode if pooling else report.pooling
    if training_args.process_index == 0:  # a multi-process launch: every rank checked the twin, rank 0 writes
        st_dir = folder if pooling is not None else None
        save_twin_release(twin, report, out_dir, processing_class=processor, base_model=args.model_dir,
                          sentence_transformers_dir=st_dir, overwrite=args.overwrite)  # fmt: skip
        print(report.format_table())
        print(f"ReLU twin ({report.training['road']} road, {report.training['steps']} steps) written to {out_dir}")
    _leave_process_group()


def _leave_process_group() -> None:
    """After a multi-process launch: wait for rank 0's release, then leave the group (gloo may abort at exit
    otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()

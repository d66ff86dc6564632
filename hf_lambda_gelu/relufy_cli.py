"""``hf-lambda-gelu relufy MODEL_DIR OUT_DIR --data FILE``: a ReLU twin of a trained GELU model, as a release folder.

Everything that can be checked is checked before training (the model has a GELU that a config field
controls, the data files, the eval set's size, the pooling, an empty or previous-release OUT_DIR), so a
bad input costs one line and writes nothing. Without ``--eval-data`` the last tenth of ``--data`` is held
out for the fidelity report and not trained on.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoImageProcessor, AutoTokenizer

from .errors import DataFileError, InvalidInputError, InvalidSettingError
from .fidelity import NEIGHBOURS, model_kind
from .model_source import load_model
from .release.folder import check_output_dir
from .release.twin import save_twin_release
from .relufy import ROADS, RelufyArguments, relufy
from .relufy_data import Examples, label_ids, read_examples
from .relufy_run import DEFAULT_SAVE_STEPS, work_folder

__all__ = ["add_relufy_arguments", "run_relufy"]

logger = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.1
#: Arguments that do not change the twin: a rerun that differs only in these still resumes.
_NOT_THE_RUN = ("run", "flags", "command", "verbose", "out_dir", "overwrite", "output_dir", "save_steps")


def add_relufy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", help="The trained GELU model: a local folder or a Hub id (a SentenceTransformer too)."
    )
    parser.add_argument("--revision", help="Branch, tag or commit of a Hub id (default: main).")
    parser.add_argument("out_dir", help="The release folder to write (new, empty, or a previous release).")
    parser.add_argument("--data", required=True, help="Unlabeled inputs: .txt (a line each), .csv/.tsv/.jsonl, or an image folder.")  # fmt: skip
    parser.add_argument("--eval-data", help="Held-out inputs for the fidelity report (default: the last tenth of --data).")  # fmt: skip
    parser.add_argument("--text-column", default="text", help="Column with the text (CSV/JSONL).")
    parser.add_argument("--label-column", help="Column with labels: accuracy in the report; training uses them only with --task-alpha > 0.")  # fmt: skip
    parser.add_argument("--max-steps", type=int, help="Training steps (default: --epochs of --data).")
    parser.add_argument("--epochs", type=float, default=1.0, help="Epochs of --data when --max-steps is not given.")
    parser.add_argument("--road", choices=ROADS, default=RelufyArguments.road, help="swap (default), lambda, or refit (least-squares refit of each MLP down-projection; with --max-steps 0 or --epochs 0 the refit alone, no training).")  # fmt: skip
    parser.add_argument("--calibration-size", type=int, default=RelufyArguments.calibration_size, help="--road refit: inputs of --data that calibrate the refit (a seeded random subset).")  # fmt: skip
    parser.add_argument("--refit-ridge", type=float, default=RelufyArguments.refit_ridge, help="--road refit: ridge relative to the mean diagonal of XᵀX.")  # fmt: skip
    parser.add_argument("--learning-rate", type=float, default=RelufyArguments.learning_rate, help="Peak learning rate (linear decay).")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=RelufyArguments.per_device_train_batch_size, help="Inputs per step.")  # fmt: skip
    parser.add_argument("--max-length", type=int, default=128, help="Tokens per text (truncation).")
    parser.add_argument("--task-alpha", type=float, default=0.0, help="Weight of the task loss (needs --label-column).")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the data order (and any random init).")
    parser.add_argument(
        "--overwrite", action="store_true", help="Write into a folder that holds other files (not a release)."
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bf16 mixed precision (student and teacher; CPU too).")
    precision.add_argument("--fp16", action="store_true", help="fp16 mixed precision (a GPU).")
    parser.add_argument("--output-dir", help="Work folder that keeps checkpoints; rerunning the same command resumes from the last one (default: a temporary folder, no checkpoints).")  # fmt: skip
    parser.add_argument("--save-steps", type=int, default=DEFAULT_SAVE_STEPS, help="With --output-dir: steps between checkpoints (the end is saved too; the last one is kept).")  # fmt: skip


def _processor(model_dir: Path, is_image: bool) -> Any:
    return (AutoImageProcessor if is_image else AutoTokenizer).from_pretrained(model_dir)


def _encode(examples: Examples, processor: Any, max_length: int, config: Any, path: str) -> list[dict]:
    if examples.is_image:
        from PIL import Image

        items = []
        for image_path in examples.inputs:
            with Image.open(image_path) as image:
                pixels = processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
            items.append({"pixel_values": pixels})
    else:
        encoded = processor(examples.inputs, truncation=True, max_length=max_length)
        items = [{k: v[i] for k, v in encoded.items()} for i in range(len(examples))]
    if examples.labels is not None:
        try:
            ids = label_ids(examples.labels, config)
        except InvalidInputError as err:
            raise DataFileError(path, str(err).rstrip("."), "fix the labels") from None
        for item, label in zip(items, ids):
            item["labels"] = label
    return items


def _collator(processor: Any, is_image: bool) -> Any:
    if is_image:
        return transformers.default_data_collator
    if processor.pad_token is None:  # GPT-2-style tokenizers: pad with EOS (the mask hides it)
        processor.pad_token = processor.eos_token
    return transformers.DataCollatorWithPadding(processor)


def run_relufy(args: argparse.Namespace) -> None:
    """The ``relufy`` subcommand: check every input, distil, write the release and print the fidelity table."""
    out_dir = Path(args.out_dir)
    check_output_dir(out_dir, overwrite=args.overwrite)
    if args.output_dir and Path(args.output_dir).resolve() == out_dir.resolve():
        raise InvalidSettingError(
            "--output-dir", args.output_dir, "the work folder cannot be OUT_DIR; give another one."
        )
    if args.task_alpha > 0 and not args.label_column:
        raise InvalidSettingError("--task-alpha", args.task_alpha, "the task loss needs labels: add --label-column.")
    # --data's labels are read for the task loss, or for the accuracy of the tenth held out from it
    data_labels = args.label_column if args.task_alpha > 0 or not args.eval_data else None
    data = read_examples(args.data, text_column=args.text_column, label_column=data_labels)
    if args.eval_data:
        held_out = read_examples(args.eval_data, text_column=args.text_column, label_column=args.label_column)
    else:
        cut = len(data) - max(1, int(len(data) * HELD_OUT_FRACTION))
        held_out = Examples(data.inputs[cut:], data.labels and data.labels[cut:], data.is_image)
        data = Examples(data.inputs[:cut], data.labels and data.labels[:cut], data.is_image)
        if not data.inputs:
            raise DataFileError(args.data, "one example cannot be both trained on and held out", "give more data")
    loaded = load_model(args.model_dir, revision=args.revision)
    model, pooling = loaded.model, loaded.pooling
    kind = model_kind(model)
    if kind == "embedder" and len(held_out) <= NEIGHBOURS:
        raise DataFileError(
            args.eval_data or args.data,
            f"{len(held_out)} held-out inputs; the neighbour agreement needs more than {NEIGHBOURS}",
            "give a larger --eval-data",
        )
    processor = _processor(loaded.folder, data.is_image)
    if args.task_alpha == 0:
        data = Examples(data.inputs, None, data.is_image)  # label-free: the training data's labels are not used
    train = _encode(data, processor, args.max_length, model.config, args.data)
    evals = _encode(held_out, processor, args.max_length, model.config, args.eval_data or args.data)
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
            num_train_epochs=args.epochs,
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
            model, train, training_args, eval_dataset=evals, data_collator=_collator(processor, data.is_image),
            pooling=pooling,
        )  # fmt: skip
    report.pooling = pooling.mode if pooling else report.pooling
    st_dir = loaded.folder if pooling is not None else None
    save_twin_release(twin, report, out_dir, processing_class=processor, base_model=args.model_dir,
                      sentence_transformers_dir=st_dir, overwrite=args.overwrite)  # fmt: skip
    print(report.format_table())
    print(f"ReLU twin ({report.training['road']} road, {report.training['steps']} steps) written to {out_dir}")

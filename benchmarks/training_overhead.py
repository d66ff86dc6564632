"""Training cost of λ-GELU against GELU on a MiniLM-sized BERT, and inference of the final ReLU model.

Model: ``BertForSequenceClassification`` from ``BertConfig(hidden_size=384, num_hidden_layers=6,
num_attention_heads=12, intermediate_size=1536)`` (all-MiniLM-L6-v2's shape, random init, seed 0),
batch 16 × 128 tokens, fp32, train mode (dropout on).

Training variants, all from the same initial weights:

- ``gelu_eager`` / ``gelu_compiled``: the stock GELU model, AdamW (lr 1e-4) over the usual groups.
- ``lambda_gelu_eager`` / ``lambda_gelu_compiled``: the same model after ``convert_to_lambda_gelu``
  (one learnable λ per layer), AdamW with λ in its own group (``lambda_param_groups``) and the
  optimizer-aware λ update (``install_lambda_update``), i.e. what ``LambdaGELUTrainer`` runs while λ
  learns. One step = zero_grad + forward + backward + optimizer step.
- ``lambda_gelu_distill_eager``: ``lambda_gelu_eager`` plus feature distillation to the frozen GELU
  original (``distill_alpha``: the student returns its hidden states, the teacher runs one extra
  no-grad forward, masked MSE of every layer): the cost of that lever. Its ``saved_bytes`` counts
  the student's forward with hidden states (the teacher saves nothing).

Inference variants (eval mode, ``torch.no_grad``, forward only): ``gelu_*`` (the original) and
``relu_*`` (the λ-GELU model after ``reluize``: what training ends with), eager and compiled.

Compiled = ``torch.compile(model)`` (default mode; backend ``inductor`` unless ``--compile-backend``).

Timing: every variant is warmed up first (compilation happens there; its seconds are reported), then
the repetitions are interleaved (rep 1 of every variant, rep 2 of every variant, ..., rotating the
order), and the median is reported with the min and the interquartile range. Ratios compare λ-GELU to
GELU in the same mode, as the median over rounds of the per-round ratio (robust to the load drifts of
a shared machine; the ratio of the medians is reported too). Inductor caches compiled code on disk: set TORCHINDUCTOR_FORCE_DISABLE_CACHES=1
to see cold compilation times.

Memory, two figures per training variant (CPU has no ``max_memory_allocated``, and tracemalloc does not
see torch's allocator):

- ``peak_bytes``: the most bytes held at once during one training step beyond what was held before it,
  from the CPU allocator's allocation/free events recorded by ``torch.profiler`` (``profile_memory=True``):
  activations, gradients, optimizer temporaries. Measured in a separate pass so the profiler does not
  disturb the timings.
- ``saved_bytes`` (eager only): bytes of the distinct tensors autograd saves for backward during the
  forward (``torch.autograd.graph.saved_tensors_hooks``), the activation memory proper. Compiled graphs
  save their tensors inside the compiled function, out of the hooks' sight: reported as null.

Threads: torch's default (one per core) for the full run, 1 for ``--quick`` (tiny model); ``--threads N``.

Process RSS is not used: the allocator keeps freed pages, so RSS deltas reflect history, not peaks.

Usage::

    python benchmarks/training_overhead.py                 # writes results/training_overhead.json
    python benchmarks/training_overhead.py --quick --out /tmp/t.json   # smoke test (tiny BERT)
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import bench_common as common
import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers import logging as hf_logging

from hf_lambda_gelu import convert_to_lambda_gelu, install_lambda_update, lambda_param_groups, reluize
from hf_lambda_gelu.distillation import Distiller, frozen_copy

DEFAULT_OUT = common.RESULTS_DIR / "training_overhead.json"
#: Targets from the issue: λ-GELU / GELU in the same mode.
TARGETS = {"train_time_ratio_max": 1.05, "train_peak_memory_ratio_max": 1.01}

MINILM = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=128)


@dataclass(frozen=True)
class Settings:
    """Model size, batch shape and repetition counts of a run."""

    config: dict
    batch: int
    seq: int
    warmup: int
    reps: int


FULL = Settings(config=MINILM, batch=16, seq=128, warmup=2, reps=20)
QUICK = Settings(config=TINY, batch=2, seq=16, warmup=2, reps=3)


@dataclass
class Variant:
    """A model (possibly compiled) and the callable that runs one measured unit of work on it."""

    model: torch.nn.Module
    run: Callable[[], object]


def make_batch(config: BertConfig, settings: Settings) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (settings.batch, settings.seq)
    return {
        "input_ids": torch.randint(0, config.vocab_size, shape, generator=g),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "labels": torch.randint(0, 2, (settings.batch,), generator=g),
    }


def _loss(model: torch.nn.Module, batch: dict, distiller: Distiller | None) -> torch.Tensor:
    if distiller is None:
        return model(**batch).loss
    out = model(**batch, output_hidden_states=True)
    return out.loss + distiller.loss(out, batch)


def training_variant(
    model: torch.nn.Module, batch: dict, compile_backend: str | None, distiller: Distiller | None = None
) -> Variant:
    """One training step per call: AdamW over ``lambda_param_groups`` (+ the λ update when λ exists, + the
    distillation term when ``distiller`` is given)."""
    optimizer = torch.optim.AdamW(lambda_param_groups(model, lr=1e-4, weight_decay=0.01, lambda_learning_rate=1e-2))
    install_lambda_update(optimizer, model)  # a no-op for a model without λ
    model.train()
    runnable = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = _loss(runnable, batch, distiller)
        loss.backward()
        optimizer.step()
        return loss

    return Variant(runnable, step)


def inference_variant(model: torch.nn.Module, batch: dict, compile_backend: str | None) -> Variant:
    """One forward (eval mode, no_grad) per call."""
    model.eval()
    runnable = torch.compile(model, backend=compile_backend) if compile_backend else model
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    @torch.no_grad()
    def forward():
        return runnable(**inputs).logits

    return Variant(runnable, forward)


def _graphs_compiled() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def time_interleaved(variants: dict[str, Variant], warmup: int, reps: int) -> tuple[dict[str, dict], int]:
    """Warm every variant up, then time ``reps`` interleaved rounds.

    Returns per variant the median/min/IQR in ms, the raw times and the warm-up seconds (compilation
    included), and the number of graphs Dynamo compiled during the timed rounds (0 unless something
    recompiled, which would spoil the timing).
    """
    warmup_s = {}
    for name, v in variants.items():
        start = time.perf_counter()
        for _ in range(warmup):
            v.run()
        warmup_s[name] = time.perf_counter() - start
    graphs = _graphs_compiled()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            variants[name].run()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, ts in times.items():
        ms = sorted(t * 1e3 for t in ts)
        quartiles = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        out[name] = {"median_ms": statistics.median(ms), "min_ms": ms[0], "iqr_ms": quartiles[2] - quartiles[0]}
        out[name]["times_ms"] = [t * 1e3 for t in ts]
        out[name]["warmup_s"] = warmup_s[name]
    return out, _graphs_compiled() - graphs


def _add_time_ratios(ours: dict, base: dict) -> None:
    """``time_ratio_to_gelu``: median over rounds of the per-round ratio (both ran in the same round, so
    slow drifts of the machine's load cancel); ``median_time_ratio_to_gelu``: ratio of the medians."""
    ours["time_ratio_to_gelu"] = statistics.median(o / b for o, b in zip(ours["times_ms"], base["times_ms"]))
    ours["median_time_ratio_to_gelu"] = ours["median_ms"] / base["median_ms"]


def saved_bytes(model: torch.nn.Module, batch: dict, distiller: Distiller | None = None) -> int:
    """Bytes of the distinct storages autograd saves for backward during one forward (eager models)."""
    storages: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model, batch, distiller)
    del loss
    return int(sum(storages.values()))


def run(settings: Settings, compile_backend: str) -> dict:
    """Build the variants, time training and inference side by side, measure training memory."""
    # problem_type set up front: BERT sets it on its first call otherwise, which recompiles a compiled model.
    config = BertConfig(**settings.config, num_labels=2, problem_type="single_label_classification")
    torch.manual_seed(0)
    gelu = BertForSequenceClassification(config)
    lam = convert_to_lambda_gelu(copy.deepcopy(gelu))
    batch = make_batch(config, settings)
    models = {
        "gelu_eager": gelu,
        "lambda_gelu_eager": lam,
        "gelu_compiled": copy.deepcopy(gelu),
        "lambda_gelu_compiled": copy.deepcopy(lam),
        "lambda_gelu_distill_eager": copy.deepcopy(lam),
    }
    distillers = {"lambda_gelu_distill_eager": Distiller(frozen_copy(gelu), distill_alpha=1.0)}
    train = {
        name: training_variant(m, batch, compile_backend if name.endswith("_compiled") else None, distillers.get(name))
        for name, m in models.items()
    }
    t0 = time.perf_counter()
    training, training_recompiles = time_interleaved(train, settings.warmup, settings.reps)
    for name, r in training.items():
        r["peak_bytes"] = common.cpu_peak_bytes(train[name].run)
        r["saved_bytes"] = saved_bytes(models[name], batch, distillers.get(name)) if name.endswith("_eager") else None
    for base_name, name in [(f"gelu_{m}", f"lambda_gelu_{m}") for m in ("eager", "compiled")] + [
        ("gelu_eager", "lambda_gelu_distill_eager")
    ]:
        base, ours = training[base_name], training[name]
        _add_time_ratios(ours, base)
        ours["peak_ratio_to_gelu"] = ours["peak_bytes"] / max(base["peak_bytes"], 1)
        if ours["saved_bytes"] is not None:
            ours["saved_extra_bytes_vs_gelu"] = ours["saved_bytes"] - base["saved_bytes"]
    training_s = time.perf_counter() - t0

    relu = copy.deepcopy(lam)
    reluize(relu)
    t0 = time.perf_counter()
    infer = {
        "gelu_eager": inference_variant(copy.deepcopy(gelu), batch, None),
        "relu_eager": inference_variant(copy.deepcopy(relu), batch, None),
        "gelu_compiled": inference_variant(copy.deepcopy(gelu), batch, compile_backend),
        "relu_compiled": inference_variant(relu, batch, compile_backend),
    }
    inference, inference_recompiles = time_interleaved(infer, settings.warmup, settings.reps)
    for mode in ("eager", "compiled"):
        _add_time_ratios(inference[f"relu_{mode}"], inference[f"gelu_{mode}"])
    inference_s = time.perf_counter() - t0

    checks = {}
    for mode in ("eager", "compiled"):
        r = training[f"lambda_gelu_{mode}"]
        checks[f"{mode}_time_ratio"] = r["time_ratio_to_gelu"]
        checks[f"{mode}_time_ok"] = r["time_ratio_to_gelu"] <= TARGETS["train_time_ratio_max"]
        checks[f"{mode}_peak_ratio"] = r["peak_ratio_to_gelu"]
        checks[f"{mode}_peak_ok"] = r["peak_ratio_to_gelu"] <= TARGETS["train_peak_memory_ratio_max"]
    checks["distill_eager_time_ratio"] = training["lambda_gelu_distill_eager"]["time_ratio_to_gelu"]
    return {
        "settings": {**settings.__dict__, "compile_backend": compile_backend, "dtype": "float32"},
        "parameters": {
            "gelu": sum(p.numel() for p in gelu.parameters()),
            "lambda_gelu": sum(p.numel() for p in lam.parameters()),
        },
        "training": training,
        "inference": inference,
        "seconds": {"training_incl_compile_and_memory": training_s, "inference_incl_compile": inference_s},
        "graphs_compiled_during_timing": {"training": training_recompiles, "inference": inference_recompiles},
        "targets": TARGETS,
        "checks": checks,
    }


def format_report(report: dict) -> str:
    """Training and inference tables."""
    rows = []
    for name, r in report["training"].items():
        saved = "n/a" if r["saved_bytes"] is None else f"{r['saved_bytes'] / 2**20:.1f}"
        rows.append(
            [
                name,
                f"{r['median_ms']:.1f}",
                f"{r['min_ms']:.1f}",
                f"{r['iqr_ms']:.1f}",
                f"{r.get('time_ratio_to_gelu', 1.0):.3f}",
                f"{r['peak_bytes'] / 2**20:.1f}",
                f"{r.get('peak_ratio_to_gelu', 1.0):.4f}",
                saved,
                f"{r['warmup_s']:.1f}",
            ]
        )
    header = ["training step", "median ms", "min ms", "IQR ms", "× GELU", "peak MiB", "× GELU", "saved MiB", "warmup s"]
    lines = [common.format_table(header, rows), ""]
    rows = [
        [
            name,
            f"{r['median_ms']:.1f}",
            f"{r['min_ms']:.1f}",
            f"{r['iqr_ms']:.1f}",
            f"{r.get('time_ratio_to_gelu', 1.0):.3f}",
            f"{r['warmup_s']:.1f}",
        ]
        for name, r in report["inference"].items()
    ]
    header = ["inference forward", "median ms", "min ms", "IQR ms", "× GELU", "warmup s"]
    lines.append(common.format_table(header, rows))
    s = report["settings"]
    lines.append(
        f"(batch {s['batch']}×{s['seq']}, median of {s['reps']} interleaved reps after {s['warmup']} warmup, "
        f"compile backend {s['compile_backend']}, {report['meta']['torch_threads']} threads, torch {report['meta']['torch']}; "
        f"graphs compiled during timing: {report['graphs_compiled_during_timing']})"
    )
    lines.append(
        "checks: " + ", ".join(f"{k}={v if isinstance(v, bool) else round(v, 4)}" for k, v in report["checks"].items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=None)
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default inductor; quick: eager, i.e. Dynamo capture without code generation)",
    )
    parser.add_argument("--reps", type=int, default=None, help="measured repetitions per variant (default 20; quick 3)")
    args = parser.parse_args(argv)
    common.apply_threads(1 if args.threads is None and args.quick else args.threads)
    hf_logging.set_verbosity_error()
    logging.getLogger("hf_lambda_gelu").setLevel(logging.ERROR)
    settings = QUICK if args.quick else FULL
    if args.reps is not None:
        if args.reps < 1:
            parser.error(f"--reps must be ≥ 1 (got {args.reps})")
        settings = Settings(**{**settings.__dict__, "reps": args.reps})
    backend = args.compile_backend or ("eager" if args.quick else "inductor")

    meta = common.machine_meta(args.quick)
    start = time.perf_counter()
    report = {"meta": meta, **run(settings, backend)}
    meta["runtime_s"] = time.perf_counter() - start
    meta["load_average_at_end"] = common.load_average()
    print(format_report(report))
    common.write_json(report, common.output_path(args.out, args.quick, DEFAULT_OUT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

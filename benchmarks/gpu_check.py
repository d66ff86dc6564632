"""GPU check: what a GPU user of λ-GELU pays and gets, in one command (≤ 8 minutes on one H100/H200).

Sections (each runs on its own: an exception is recorded in the JSON as the section's ``error`` and the
next section still runs; the exit code is 1 if any section failed):

- ``op``: forward+backward time and peak memory of the λ-GELU op (``hf_lambda_gelu.lambda_gelu``, λ a learnable
  fp32 tensor) against ``F.gelu`` and ``F.relu``, eager and ``torch.compile``, bf16 and fp32, at the MLP shapes
  of BERT-base (32×512×3072) and GPT-2-medium (8×1024×4096). The variants and the timing loop are
  ``bench_activation.py``'s: warm-up (compilation), then interleaved rounds; a ratio is the median over rounds
  of the per-round ratio. Peak memory: CUDA ``max_memory_allocated`` beyond what was held before (CPU: the
  profiler's allocator trace).
- ``train_bert_base``, ``train_gpt2`` (one section per model): ``Trainer`` steps of a BERT-base-shaped
  classifier (batch 32×128) and of a GPT-2 (124M) LM (batch 8×512), random weights from configs, bf16 autocast (``bf16=True``), three arms from the same weights:
  ``gelu`` (stock ``Trainer``), ``lambda_gelu`` (``LambdaGELUTrainer``, the default road — hardened from step 0
  to λ* at 10 %, then ReLU — without distillation, ``distill_alpha=0``) and ``lambda_gelu_distill`` (its
  defaults, feature distillation on). Step time = the Trainer's step (``on_step_begin`` → ``on_step_end``,
  synchronized), median over the steps after warm-up; the arms' runs are interleaved in rounds and the ratio
  to ``gelu`` is the median over rounds. Peak memory = ``max_memory_allocated`` during the run beyond what was
  held before the trainer was built (model, gradients, optimizer state, teacher, activations); null on CPU.
  The default-road run of the last round is then released with ``hf_lambda_gelu.save_release``; whether the
  release gate passed (and its error if not) is recorded as data.
- ``fsdp2``: a λ-GELU BERT trained a few steps under FSDP2 on one device, ReLU-ized, saved, reloaded here
  with ``from_pretrained`` and compared with the sharded model's logits (``gpu_check_fsdp.py``). On CUDA
  through the recipes' accelerate config (``accelerate launch --config_file recipes/configs/fsdp2_bert.yaml
  --num_processes 1``, ``LambdaGELUTrainer``); on CPU (``--tiny``) ``torchrun`` + ``fully_shard`` with gloo,
  since through the Trainer on CPU accelerate silently runs DDP. ``path`` records which ran.

Targets (issue 20): op ≤ 1.10× ``F.gelu`` compiled in bf16, ≤ 1.5× eager in bf16; training step ≤ 1.03× GELU
without distillation; peak memory ≤ GELU + 1 %; the bf16 release passes the gate.

Usage::

    python benchmarks/gpu_check.py                      # CUDA, real sizes: writes results/gpu/gpu_check.json
    python benchmarks/gpu_check.py --tiny --out /tmp/g.json   # CPU smoke test: tiny shapes and models
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bench_activation
import bench_common as common
import torch
from relufy_timing import StepTimer, sync, timed_relufy
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)
from transformers import logging as hf_logging

import hf_lambda_gelu
from hf_lambda_gelu import (
    LambdaGELU,
    LambdaGELUTrainer,
    LambdaGELUTrainingArguments,
    RelufyArguments,
    relufy,
    save_release,
)

DEFAULT_OUT = common.RESULTS_DIR / "gpu" / "gpu_check.json"
REPO = Path(__file__).resolve().parents[1]
FSDP_WORKER = Path(__file__).resolve().with_name("gpu_check_fsdp.py")
FSDP_CONFIG = REPO / "recipes" / "configs" / "fsdp2_bert.yaml"
RELUFY_DIST_WORKER = Path(__file__).resolve().with_name("gpu_check_relufy_dist.py")
DISTIL_ROADS = ("swap", "lambda")

TARGETS = {
    "op_compiled_bf16_time_ratio_max": 1.10,
    "op_eager_bf16_time_ratio_max": 1.5,
    "train_step_time_ratio_max": 1.03,
    "train_peak_memory_ratio_max": 1.01,
}
OP_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
OP_VARIANTS = ("relu", "gelu_eager", "gelu_compiled", "lambda_gelu_eager", "lambda_gelu_compiled")
TRAIN_ARMS = ("gelu", "lambda_gelu", "lambda_gelu_distill")


@dataclass(frozen=True)
class TrainModel:
    """A model built from a config (random weights) and the batch shape it trains on."""

    build: Callable[[], PreTrainedModel]
    batch: int
    seq: int
    lm: bool  # labels are the input ids (causal LM) rather than a class


@dataclass(frozen=True)
class Settings:
    """Sizes and repetition counts of a run (real sizes on CUDA, ``--tiny`` on CPU)."""

    device: torch.device
    op_shapes: dict[str, tuple[int, ...]]
    op_warmup: int
    op_reps: int
    compile_backend: str
    train_models: dict[str, TrainModel]
    train_steps: int
    train_warmup_steps: int  # steps of every run left out of its median (allocator, autotuning, first hardening)
    train_rounds: int
    fsdp_size: str  # gpu_check_fsdp.SIZES key
    relufy_models: dict[str, TrainModel]
    workdir: Path


def _full_settings(workdir: Path) -> Settings:
    return Settings(
        device=torch.device("cuda"),
        op_shapes={"bert_base_mlp": (32, 512, 3072), "gpt2_medium_mlp": (8, 1024, 4096)},
        op_warmup=3,
        op_reps=30,
        compile_backend="inductor",
        train_models={
            "bert_base": TrainModel(lambda: BertForSequenceClassification(BertConfig(num_labels=2)), 32, 128, False),
            "gpt2": TrainModel(lambda: GPT2LMHeadModel(GPT2Config()), 8, 512, True),
        },
        train_steps=40,
        train_warmup_steps=5,
        train_rounds=2,
        fsdp_size="full",
        relufy_models={
            "bert_base": TrainModel(lambda: BertForSequenceClassification(BertConfig(num_labels=2)), 32, 128, False),
            "gpt2_medium": TrainModel(
                lambda: GPT2LMHeadModel(GPT2Config(n_embd=1024, n_layer=24, n_head=16)), 8, 512, True
            ),
        },
        workdir=workdir,
    )


def _tiny_settings(workdir: Path) -> Settings:
    bert = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    gpt2 = dict(vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return Settings(
        device=torch.device("cpu"),
        op_shapes={"bert_base_mlp": (4, 16, 64), "gpt2_medium_mlp": (2, 32, 96)},
        op_warmup=1,
        op_reps=3,
        compile_backend="aot_eager",  # Dynamo + AOTAutograd without Inductor's C++ compilation
        train_models={
            "bert_base": TrainModel(
                lambda: BertForSequenceClassification(BertConfig(**bert, num_labels=2)), 4, 16, False
            ),
            "gpt2": TrainModel(lambda: GPT2LMHeadModel(GPT2Config(**gpt2)), 2, 16, True),
        },
        train_steps=4,
        train_warmup_steps=1,
        train_rounds=1,
        fsdp_size="tiny",
        relufy_models={
            "bert_base": TrainModel(
                lambda: BertForSequenceClassification(BertConfig(**bert, num_labels=2)), 4, 16, False
            ),
            "gpt2_medium": TrainModel(lambda: GPT2LMHeadModel(GPT2Config(**gpt2)), 2, 16, True),
        },
        workdir=workdir,
    )


def _ratio_over_rounds(ours: list[float], base: list[float]) -> float:
    """Median over rounds of the per-round ratio: both ran in the same round, so drifts of the machine cancel."""
    return statistics.median(o / b for o, b in zip(ours, base))


# -- (a) the op ----------------------------------------------------------------------------------
def _op_case(shape: tuple[int, ...], dtype: torch.dtype, s: Settings) -> dict:
    torch._dynamo.reset()  # fresh compiled code for this shape and dtype (no dynamic-shape recompiles)
    torch.manual_seed(0)
    x = torch.randn(*shape, device=s.device, dtype=dtype, requires_grad=True)
    lam = torch.tensor([1.5], device=s.device, requires_grad=True)  # fp32, as LambdaGELU's parameter is
    grad_out = torch.randn_like(x)
    built = bench_activation.build_variants(compile_backend=s.compile_backend)
    variants = {name: built[name] for name in OP_VARIANTS}
    times = bench_activation.time_variants(variants, x, lam, grad_out, warmup=s.op_warmup, reps=s.op_reps)
    # with grad on, as timed (under no_grad the compiled function would recompile)
    eager = variants["lambda_gelu_eager"](x, lam).detach().float()
    compiled = variants["lambda_gelu_compiled"](x, lam).detach().float()
    variants_out = {
        name: {
            "median_ms": statistics.median(times[name]) * 1e3,
            "times_ms": [t * 1e3 for t in times[name]],
            "peak_bytes": bench_activation.peak_bytes(fn, x, lam, grad_out),
        }
        for name, fn in variants.items()
    }

    def peak_ratio(ours: str, base: str) -> float:
        return variants_out[ours]["peak_bytes"] / max(variants_out[base]["peak_bytes"], 1)

    return {
        "shape": list(shape),
        "variants": variants_out,
        "eager_time_ratio_to_gelu": _ratio_over_rounds(times["lambda_gelu_eager"], times["gelu_eager"]),
        "compiled_time_ratio_to_gelu": _ratio_over_rounds(times["lambda_gelu_compiled"], times["gelu_compiled"]),
        "eager_time_ratio_to_relu": _ratio_over_rounds(times["lambda_gelu_eager"], times["relu"]),
        "eager_peak_ratio_to_gelu": peak_ratio("lambda_gelu_eager", "gelu_eager"),
        "compiled_peak_ratio_to_gelu": peak_ratio("lambda_gelu_compiled", "gelu_compiled"),
        "compiled_max_rel_diff_to_eager": float((compiled - eager).abs().max() / eager.abs().max().clamp_min(1e-30)),
    }


def op_section(s: Settings) -> dict:
    """λ-GELU op vs F.gelu / F.relu, eager and compiled, bf16 and fp32, at the two MLP shapes."""
    cases, checks = {}, {}
    for shape_name, shape in s.op_shapes.items():
        for dtype_name, dtype in OP_DTYPES.items():
            key = f"{shape_name}_{dtype_name}"
            cases[key] = case = _op_case(shape, dtype, s)
            if dtype_name == "bf16":
                checks[f"{key}_eager_time_ok"] = (
                    case["eager_time_ratio_to_gelu"] <= TARGETS["op_eager_bf16_time_ratio_max"]
                )
                checks[f"{key}_compiled_time_ok"] = (
                    case["compiled_time_ratio_to_gelu"] <= TARGETS["op_compiled_bf16_time_ratio_max"]
                )
    return {
        "settings": {"warmup": s.op_warmup, "reps": s.op_reps, "compile_backend": s.compile_backend, "lambda": 1.5},
        "cases": cases,
        "checks": checks,
    }


def _op_rows(result: dict) -> list[list[str]]:
    rows = []
    for key, case in result["cases"].items():
        bf16 = key.endswith("_bf16")
        for mode, target in (
            ("eager", "op_eager_bf16_time_ratio_max"),
            ("compiled", "op_compiled_bf16_time_ratio_max"),
        ):
            ok = result["checks"].get(f"{key}_{mode}_time_ok")
            rows.append(
                [
                    f"{key} {mode} time ×F.gelu",
                    f"{case[f'{mode}_time_ratio_to_gelu']:.3f}",
                    f"≤ {TARGETS[target]}" if bf16 else "",
                    _ok(ok),
                ]
            )
            rows.append([f"{key} {mode} peak ×F.gelu", f"{case[f'{mode}_peak_ratio_to_gelu']:.3f}", "", ""])
        rows.append([f"{key} eager time ×ReLU", f"{case['eager_time_ratio_to_relu']:.3f}", "", ""])
    return rows


# -- (b) the training step -----------------------------------------------------------------------
def _random_data(model: PreTrainedModel, spec: TrainModel, count: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (count, spec.seq), generator=g)
    return [{"input_ids": row, "labels": row.clone() if spec.lm else (row[0] % 2).long()} for row in ids]


def _trainer(arm: str, model: PreTrainedModel, data: list, spec: TrainModel, s: Settings, out: Path) -> Trainer:
    common_args = dict(
        output_dir=str(out),
        max_steps=s.train_steps,
        per_device_train_batch_size=spec.batch,
        bf16=True,
        use_cpu=s.device.type == "cpu",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    if arm == "gelu":
        return Trainer(model=model, args=TrainingArguments(**common_args), train_dataset=data)
    extra = {"distill_alpha": 0.0} if arm == "lambda_gelu" else {}  # lambda_gelu_distill: the defaults
    args = LambdaGELUTrainingArguments(**common_args, **extra)
    return LambdaGELUTrainer(model=model, args=args, train_dataset=data)


def _quiet(trainer: Trainer) -> Trainer:
    trainer.remove_callback(PrinterCallback)  # the Trainer's log lines would drown the table
    return trainer


def _release_gate(trainer: LambdaGELUTrainer, folder: Path) -> dict:
    """save_release on the trained, ReLU-ized model; the gate's verdict as data (never raised)."""
    start = time.perf_counter()
    try:
        save_release(trainer.model, folder, report=trainer.reluization_report, profile=trainer.final_profile)
    except Exception as exc:  # the verdict is the measurement: record it, whatever it is
        return {"passed": False, "error": f"{type(exc).__name__}: {exc}"[:4000], "seconds": time.perf_counter() - start}
    return {"passed": True, "error": None, "seconds": time.perf_counter() - start}


def _train_model(name: str, spec: TrainModel, s: Settings) -> dict:
    torch.manual_seed(0)
    base = spec.build()
    data = _random_data(base, spec, spec.batch * s.train_steps)
    runs: dict[str, list[list[float]]] = {arm: [] for arm in TRAIN_ARMS}
    peaks: dict[str, list[int]] = {arm: [] for arm in TRAIN_ARMS}
    gate = None
    for round_index in range(s.train_rounds):
        arms = TRAIN_ARMS[round_index % len(TRAIN_ARMS) :] + TRAIN_ARMS[: round_index % len(TRAIN_ARMS)]
        for arm in arms:
            gc.collect()
            if s.device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(s.device)
                held = torch.cuda.memory_allocated(s.device)
            out = s.workdir / f"train_{name}_{arm}_{round_index}"
            trainer = _quiet(_trainer(arm, copy.deepcopy(base), data, spec, s, out))
            timer = StepTimer(s.device)
            trainer.add_callback(timer)
            trainer.train()
            if s.device.type == "cuda":
                peaks[arm].append(int(torch.cuda.max_memory_allocated(s.device) - held))
            runs[arm].append([t * 1e3 for t in timer.times])
            if arm == "lambda_gelu_distill" and round_index == s.train_rounds - 1:
                gate = _release_gate(trainer, out / "release")
            del trainer
    arms_out = {}
    medians = {arm: [statistics.median(times[s.train_warmup_steps :]) for times in runs[arm]] for arm in TRAIN_ARMS}
    for arm in TRAIN_ARMS:
        peak = max(peaks[arm]) if peaks[arm] else None
        arms_out[arm] = {"step_ms_per_round": medians[arm], "times_ms": runs[arm], "peak_bytes": peak}
    gelu_peak = arms_out["gelu"]["peak_bytes"]
    for arm in TRAIN_ARMS[1:]:
        arms_out[arm]["step_time_ratio_to_gelu"] = _ratio_over_rounds(medians[arm], medians["gelu"])
        peak = arms_out[arm]["peak_bytes"]
        arms_out[arm]["peak_ratio_to_gelu"] = None if gelu_peak is None else peak / max(gelu_peak, 1)
    ours = arms_out["lambda_gelu"]
    return {
        "parameters": sum(p.numel() for p in base.parameters()),
        "config": {
            k: base.config.to_dict().get(k)
            for k in (
                "model_type",
                "hidden_size",
                "n_embd",
                "num_hidden_layers",
                "n_layer",
                "intermediate_size",
                "vocab_size",
            )
        },
        "batch": [spec.batch, spec.seq],
        "arms": arms_out,
        "release_gate": gate,
        "checks": {
            "step_time_ok": ours["step_time_ratio_to_gelu"] <= TARGETS["train_step_time_ratio_max"],
            "peak_ok": None
            if ours["peak_ratio_to_gelu"] is None
            else ours["peak_ratio_to_gelu"] <= TARGETS["train_peak_memory_ratio_max"],
            "release_gate_passed": gate["passed"],
        },
    }


def training_section(s: Settings, model: str) -> dict:
    """GELU vs λ-GELU (default road, without and with distillation) Trainer steps of one model in bf16 autocast,
    and the release gate on the default road's release."""
    settings = {"steps": s.train_steps, "warmup_steps": s.train_warmup_steps, "rounds": s.train_rounds, "bf16": True}
    return {"settings": settings, **_train_model(model, s.train_models[model], s)}


def _training_rows(result: dict) -> list[list[str]]:
    rows = []
    checks = result["checks"]
    for arm in TRAIN_ARMS[1:]:
        r = result["arms"][arm]
        plain = arm == "lambda_gelu"  # the targets are for the road without distillation
        rows.append(
            [
                f"{arm} step ×GELU",
                f"{r['step_time_ratio_to_gelu']:.3f}",
                f"≤ {TARGETS['train_step_time_ratio_max']}" if plain else "",
                _ok(checks["step_time_ok"] if plain else None),
            ]
        )
        rows.append(
            [
                f"{arm} peak ×GELU",
                "n/a (CPU)" if r["peak_ratio_to_gelu"] is None else f"{r['peak_ratio_to_gelu']:.4f}",
                f"≤ {TARGETS['train_peak_memory_ratio_max']}" if plain else "",
                _ok(checks["peak_ok"] if plain else None),
            ]
        )
    gate = result["release_gate"]
    verdict = "passed" if gate["passed"] else "failed: " + gate["error"].split(":")[0]
    rows.append(["bf16 release gate", verdict, "passed", _ok(gate["passed"])])
    return rows


# -- (d) FSDP2 -----------------------------------------------------------------------------------
def fsdp2_section(s: Settings) -> dict:
    """A few FSDP2 steps on one device, save, reload as ReLU; CUDA: the recipes' accelerate config."""
    out = s.workdir / "fsdp2"
    out.mkdir()
    if s.device.type == "cuda":
        path = "accelerate_fsdp2_trainer"
        launcher = ["-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG), "--num_processes", "1"]
        worker_path = "trainer"
    else:
        path = "torchrun_fully_shard_gloo"
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
        worker_path = "fully_shard"
    cmd = [sys.executable, *launcher, str(FSDP_WORKER), worker_path, str(out), s.fsdp_size]
    # the worker imports the same hf_lambda_gelu as this process
    package_root = str(Path(hf_lambda_gelu.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=str(REPO))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{path} worker exited {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}")
    record = json.loads((out / "record.json").read_text())
    expected = torch.load(out / "expected.pt")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "release").eval()
    with torch.no_grad():
        logits = reloaded(input_ids=expected["input_ids"]).logits
    diff = float((logits - expected["logits"]).abs().max() / expected["logits"].abs().max().clamp_min(1e-30))
    relus = sum(isinstance(m, torch.nn.ReLU) for m in reloaded.modules())
    # the Trainer path must really have sharded (with FSDP2); the fully_shard path shards by construction
    sharded = record["is_fsdp_enabled"] and record["fsdp_version"] == 2 if worker_path == "trainer" else True
    reload_ok = (
        reloaded.config.hidden_act == "relu"
        and relus == reloaded.config.num_hidden_layers
        and not any(isinstance(m, LambdaGELU) for m in reloaded.modules())
        and diff <= 1e-4
    )
    return {
        "path": path,
        "command": " ".join(["python", *cmd[1:]]),
        "worker": record,
        "worker_seconds": seconds,
        "reloaded_hidden_act": reloaded.config.hidden_act,
        "reloaded_relu_modules": relus,
        "reloaded_max_rel_logit_diff": diff,
        "checks": {"fsdp_active": sharded, "reloads_as_relu": reload_ok},
    }


def _fsdp2_rows(result: dict) -> list[list[str]]:
    checks = result["checks"]
    return [
        ["path", result["path"], "", ""],
        ["sharded by FSDP2", str(checks["fsdp_active"]), "True", _ok(checks["fsdp_active"])],
        [
            "reloads as ReLU (logits rel. diff)",
            f"{result['reloaded_max_rel_logit_diff']:.1e}",
            "≤ 1e-4",
            _ok(checks["reloads_as_relu"]),
        ],
    ]


@contextlib.contextmanager
def _peak_bytes(device: torch.device) -> Iterator[dict]:
    """Inside: CUDA ``max_memory_allocated`` beyond what was held at entry, into ``["peak_bytes"]`` (CPU: None)."""
    record: dict = {"peak_bytes": None}
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    yield record
    if device.type == "cuda":
        record["peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - held)


def _gate(twin: PreTrainedModel, folder: Path) -> dict:
    try:
        save_release(twin, folder)
    except Exception as exc:  # the verdict is the measurement
        return {"passed": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
    return {"passed": True, "error": None}


def _relufy_args(out: Path, spec: TrainModel, s: Settings, **overrides) -> RelufyArguments:
    return RelufyArguments(
        output_dir=str(out), per_device_train_batch_size=spec.batch, bf16=True, use_cpu=s.device.type == "cpu",
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0, **overrides,
    )  # fmt: skip


def _relufy_model(name: str, spec: TrainModel, s: Settings) -> dict:
    """One model in bf16: the refit alone (road "refit", 0 steps) and the distillation of each training road."""
    torch.manual_seed(0)
    original = spec.build().to(s.device).eval()
    data = [{"input_ids": x["input_ids"]} for x in _random_data(original, spec, spec.batch * s.train_steps)]
    out = s.workdir / f"relufy_{name}"
    with _peak_bytes(s.device) as peak:
        start = time.perf_counter()
        twin, _ = relufy(original, data, _relufy_args(out / "refit", spec, s, road="refit", max_steps=0,
                                                       calibration_size=len(data)))  # fmt: skip
        sync(s.device)
        seconds = time.perf_counter() - start
    refit = {
        "calibration_examples": len(data),
        "seconds": seconds,
        **peak,
        "release_gate": _gate(twin, out / "refit_release"),
    }
    del twin
    roads = {}
    for road in DISTIL_ROADS:
        with _peak_bytes(s.device) as peak:
            args = _relufy_args(out / road, spec, s, road=road, max_steps=s.train_steps)
            twin, timings = timed_relufy(original, data, args, s.device, s.train_warmup_steps)
        roads[road] = {**timings, **peak, "release_gate": _gate(twin, out / f"{road}_release")}
        del twin
    return {"parameters": sum(p.numel() for p in original.parameters()), "batch": [spec.batch, spec.seq],
            "refit": refit, "roads": roads}  # fmt: skip


def _relufy_distributed(s: Settings) -> dict:
    """BERT-base relufy (road swap) under DDP and FSDP2 on every GPU, through ``accelerate launch``; skipped on
    fewer than two GPUs."""
    count = torch.cuda.device_count() if s.device.type == "cuda" else 0
    if count < 2:
        return {"skipped": f"{count} GPU(s): DDP/FSDP2 need at least 2"}
    results = {}
    package_root = str(Path(hf_lambda_gelu.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    for setup, config in (("ddp", REPO / "recipes/configs/multi_gpu.yaml"), ("fsdp2", FSDP_CONFIG)):
        out = s.workdir / f"relufy_{setup}"
        out.mkdir()
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes",
               str(count), str(RELUFY_DIST_WORKER), str(out), str(s.train_steps), str(s.train_warmup_steps)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=str(REPO))
        if proc.returncode != 0:
            results[setup] = {"error": f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-3000:]}"}
            continue
        ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
        results[setup] = {"command": " ".join(["python", *cmd[1:]]), "ranks": ranks}
    return results


def relufy_section(s: Settings) -> dict:
    """The relufy job in bf16 at BERT-base and GPT-2-medium shapes: the refit's seconds and peak memory; each
    distillation road's steps/s, peak memory and teacher share of the step; the gate on every twin; DDP/FSDP2."""
    models = {name: _relufy_model(name, spec, s) for name, spec in s.relufy_models.items()}
    gates = [m["refit"]["release_gate"]["passed"] for m in models.values()]
    gates += [r["release_gate"]["passed"] for m in models.values() for r in m["roads"].values()]
    return {"bf16": True, "models": models, "distributed": _relufy_distributed(s),
            "checks": {"release_gate_passed": all(gates)}}  # fmt: skip


def _mb(value: int | None) -> str:
    return "n/a (CPU)" if value is None else f"{value / 2**20:.0f} MB"


def _relufy_rows(result: dict) -> list[list[str]]:
    rows = []
    for name, m in result["models"].items():
        batch = f"{m['batch'][0]}×{m['batch'][1]}"
        refit = m["refit"]
        rows.append([f"relufy {name} refit ({refit['calibration_examples']} inputs): s, peak", f"{refit['seconds']:.2f} s, {_mb(refit['peak_bytes'])}", "", ""])  # fmt: skip
        for road, r in m["roads"].items():
            rows.append([f"relufy {name} {road} (batch {batch}): steps/s, peak", f"{r['steps_per_second']:.2f}, {_mb(r['peak_bytes'])}", "", ""])  # fmt: skip
            rows.append([f"relufy {name} {road}: teacher share of the step", f"{r['teacher_share']:.2f}", "", ""])
        passed = [refit["release_gate"]["passed"], *(r["release_gate"]["passed"] for r in m["roads"].values())]
        rows.append([f"relufy {name}: every twin passes the gate", str(all(passed)), "True", _ok(all(passed))])
    for setup, d in result["distributed"].items():
        if setup == "skipped":
            rows.append(["relufy DDP/FSDP2", f"skipped: {d}", "", ""])
        elif "error" in d:
            rows.append([f"relufy {setup}", d["error"].split("\n")[0][:80], "", "NO"])
        else:
            r0 = d["ranks"][0]
            rows.append([f"relufy {setup} ({len(d['ranks'])} GPUs): steps/s, peak, teacher held",
                         f"{r0['steps_per_second']:.2f}, {_mb(r0['peak_bytes'])}, {r0['teacher_fraction']:.2f}", "", ""])  # fmt: skip
    return rows


# -- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """A part of the check: ``run(settings)`` returns its JSON; ``rows(result)`` its table rows."""

    name: str
    run: Callable[[Settings], dict]
    rows: Callable[[dict], list[list[str]]]


SECTIONS = (
    Section("op", op_section, _op_rows),
    Section("train_bert_base", functools.partial(training_section, model="bert_base"), _training_rows),
    Section("train_gpt2", functools.partial(training_section, model="gpt2"), _training_rows),
    Section("relufy", relufy_section, _relufy_rows),
    Section("fsdp2", fsdp2_section, _fsdp2_rows),
)


def _ok(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "NO")


def run_sections(s: Settings, sections: tuple[Section, ...]) -> dict[str, dict]:
    """Every section, each on its own: a failure is recorded as ``error`` (+ traceback) and the next one runs."""
    results = {}
    for section in sections:
        start = time.perf_counter()
        try:
            results[section.name] = section.run(s)
        except Exception as exc:  # one section's failure must not cost the others' data
            results[section.name] = {
                "error": f"{type(exc).__name__}: {exc}"[:4000],
                "traceback": traceback.format_exc(),
            }
        results[section.name]["seconds"] = time.perf_counter() - start
        print(f"[{section.name}] {results[section.name]['seconds']:.1f} s", flush=True)
    return results


def format_report(report: dict) -> str:
    rows = []
    for section in SECTIONS:
        result = report["sections"][section.name]
        section_rows = (
            [["error", result["error"].split("\n")[0][:100], "", "NO"]] if "error" in result else section.rows(result)
        )
        rows.extend([f"{section.name}: {measure}", *cells] for measure, *cells in section_rows)
    meta = report["meta"]
    footer = f"({meta['device_name']}, torch {meta['torch']}, transformers {meta['transformers']}, {meta['runtime_s']:.0f} s)"
    return common.format_table(["measure", "value", "target", "ok"], rows) + "\n" + footer


def device_meta(device: torch.device) -> dict:
    """The device: name, memory, CUDA/cuDNN versions (CPU: the processor)."""
    import accelerate

    meta = {"device": str(device), "accelerate": accelerate.__version__, "hf_lambda_gelu": hf_lambda_gelu.__version__}
    if device.type != "cuda":
        return {**meta, "device_name": f"cpu ({platform.processor() or platform.machine()})"}
    props = torch.cuda.get_device_properties(device)
    return {
        **meta,
        "device_name": torch.cuda.get_device_name(device),
        "device_total_memory_bytes": props.total_memory,
        "device_capability": list(torch.cuda.get_device_capability(device)),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=None)
    parser.add_argument(
        "--tiny", dest="quick", action="store_true", help="the same as --quick: tiny shapes and models, on CPU"
    )
    args = parser.parse_args(argv)
    if not args.quick and not torch.cuda.is_available():
        parser.error("no CUDA device (torch.cuda.is_available() is False): the CPU smoke run is --tiny")
    common.apply_threads(1 if args.threads is None and args.quick else args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("hf_lambda_gelu").setLevel(logging.ERROR)
    out = common.output_path(args.out, args.quick, DEFAULT_OUT)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as workdir:
        settings = (_tiny_settings if args.quick else _full_settings)(Path(workdir))
        meta = {**common.machine_meta(args.quick), **device_meta(settings.device)}
        sections = run_sections(settings, SECTIONS)
    meta["runtime_s"] = time.perf_counter() - start
    meta["load_average_at_end"] = common.load_average()
    failed = [name for name, result in sections.items() if "error" in result]
    report = {"meta": meta, "targets": TARGETS, "sections": sections, "failed_sections": failed}
    print(format_report(report))
    common.write_json(report, out)
    if failed:
        print(f"failed sections: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

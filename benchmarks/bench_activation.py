"""Forward+backward time, peak memory and saved-activation memory of λ-GELU against GELU, ReLU and
the naive formula.

Variants (λ is a learnable tensor of shape (1,) wherever it appears, so dλ is computed too):

- ``relu``                  F.relu(x)
- ``gelu_eager``            F.gelu(x)
- ``gelu_compiled``         torch.compile(F.gelu)
- ``lambda_gelu_eager``     hf_lambda_gelu.lambda_gelu(x, λ)
- ``lambda_gelu_compiled``  torch.compile(lambda_gelu)
- ``naive_eager``           0.5·x·(1 + erf(λx/√2)) written with plain torch ops

Timing: all variants are warmed up (compilation happens there), then measured side by side with the
repetitions interleaved (rep 1 of every variant, rep 2 of every variant, ...); the median is
reported. Peak memory is the most bytes allocated at once during one forward+backward beyond what
existed before it (CUDA: ``max_memory_allocated``; CPU: the profiler's allocator trace), measured in
separate passes so the profiler does not disturb the timings. Saved-activation memory is the bytes
handed to ``torch.autograd.graph.saved_tensors_hooks`` during the forward (distinct storages).

Usage::

    python benchmarks/bench_activation.py                 # 64×128×1536 fp32, writes results/bench_activation.json
    python benchmarks/bench_activation.py --quick --out /tmp/b.json   # smoke test
    python benchmarks/bench_activation.py --threads 1 --out benchmarks/results/bench_activation_1thread.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bench_common as common
import torch
import torch.nn.functional as F

from hf_lambda_gelu import lambda_gelu

FULL_SHAPE = (64, 128, 1536)
QUICK_SHAPE = (4, 16, 64)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_activation.json"
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

#: Targets from the issue: time ratios to GELU (same execution mode) and saved memory equal to GELU's.
TARGETS = {"eager_time_ratio_max": 2.5, "compiled_time_ratio_max": 1.2}


def _naive(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(lam * x * _INV_SQRT2))


def build_variants(
    compile_mode: str | None = None, compile_backend: str = "inductor"
) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """Name → fn(x, λ). Compiled variants use ``torch.compile`` (Inductor unless told otherwise)."""

    def gelu(x, lam):
        return F.gelu(x)

    def lam_gelu(x, lam):
        return lambda_gelu(x, lam)

    kw = {"backend": compile_backend, **({"mode": compile_mode} if compile_mode else {})}
    return {
        "relu": lambda x, lam: F.relu(x),
        "gelu_eager": gelu,
        "gelu_compiled": torch.compile(gelu, fullgraph=True, **kw),
        "lambda_gelu_eager": lam_gelu,
        "lambda_gelu_compiled": torch.compile(lam_gelu, fullgraph=True, **kw),
        "naive_eager": _naive,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(fn, x: torch.Tensor, lam: torch.Tensor, grad_out: torch.Tensor) -> None:
    x.grad = None
    lam.grad = None
    y = fn(x, lam)
    y.backward(grad_out)


def time_variants(variants, x, lam, grad_out, *, warmup: int, reps: int) -> dict[str, list[float]]:
    """Seconds per forward+backward, repetitions interleaved across variants."""
    device = x.device
    for fn in variants.values():
        for _ in range(warmup):
            _step(fn, x, lam, grad_out)
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(reps):
        # Rotate the order each repetition so no variant always runs right after the same neighbour.
        names = list(variants)
        names = names[rep % len(names) :] + names[: rep % len(names)]
        for name in names:
            _sync(device)
            start = time.perf_counter()
            _step(variants[name], x, lam, grad_out)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def peak_bytes(fn, x, lam, grad_out) -> int:
    """Most bytes allocated at once during one forward+backward, beyond what was allocated before."""
    x.grad = None
    lam.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        _step(fn, x, lam, grad_out)
        torch.cuda.synchronize(x.device)
        return int(torch.cuda.max_memory_allocated(x.device) - base)
    return common.cpu_peak_bytes(lambda: _step(fn, x, lam, grad_out))


def saved_bytes(fn, x, lam) -> int:
    """Bytes of the distinct tensors autograd saves for backward during one forward."""
    storages: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(x, lam)
    del y
    return int(sum(storages.values()))


def run(
    shape,
    device: torch.device,
    *,
    warmup: int,
    reps: int,
    compile_mode: str | None = None,
    compile_backend: str = "inductor",
    seed: int = 0,
) -> dict:
    torch.manual_seed(seed)
    x = torch.randn(*shape, device=device, requires_grad=True)
    lam = torch.tensor([1.5], device=device, requires_grad=True)
    grad_out = torch.randn(*shape, device=device)
    variants = build_variants(compile_mode, compile_backend)
    # Correctness guard: a fast wrong kernel would make the table meaningless.
    ref = _naive(x.detach().double(), lam.detach().double())
    grads = {}
    for name in ("naive_eager", "lambda_gelu_eager", "lambda_gelu_compiled"):
        y = variants[name](x, lam)
        torch.testing.assert_close(y.detach().double(), ref, atol=1e-5, rtol=1e-5, msg=name)
        grads[name] = torch.autograd.grad(y, (x, lam), grad_out)
    for name in ("lambda_gelu_eager", "lambda_gelu_compiled"):
        for got, want in zip(grads[name], grads["naive_eager"]):
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, msg=name)
    del grads
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    times = time_variants(variants, x, lam, grad_out, warmup=warmup, reps=reps)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results = {}
    for name, fn in variants.items():
        results[name] = {
            "median_ms": statistics.median(times[name]) * 1e3,
            "min_ms": min(times[name]) * 1e3,
            "times_ms": [t * 1e3 for t in times[name]],
            "peak_bytes": peak_bytes(fn, x, lam, grad_out),
            "saved_bytes": saved_bytes(fn, x, lam),
        }
    gelu_e, gelu_c = results["gelu_eager"], results["gelu_compiled"]
    for name, r in results.items():
        base = gelu_c if name.endswith("_compiled") else gelu_e
        r["time_ratio_to_gelu"] = r["median_ms"] / base["median_ms"]
        r["peak_ratio_to_gelu"] = r["peak_bytes"] / max(base["peak_bytes"], 1)
        r["saved_extra_bytes_vs_gelu"] = r["saved_bytes"] - base["saved_bytes"]
    lam_bytes = lam.numel() * lam.element_size()
    checks = {
        "eager_time_ratio": results["lambda_gelu_eager"]["time_ratio_to_gelu"],
        "compiled_time_ratio": results["lambda_gelu_compiled"]["time_ratio_to_gelu"],
        "eager_time_ok": results["lambda_gelu_eager"]["time_ratio_to_gelu"] <= TARGETS["eager_time_ratio_max"],
        "compiled_time_ok": results["lambda_gelu_compiled"]["time_ratio_to_gelu"] <= TARGETS["compiled_time_ratio_max"],
        # λ-GELU saves x (like GELU) plus λ itself (lam_bytes); nothing of the input's size more.
        "saved_memory_equal_to_gelu_eager": results["lambda_gelu_eager"]["saved_extra_bytes_vs_gelu"] <= lam_bytes,
        "saved_memory_equal_to_gelu_compiled": results["lambda_gelu_compiled"]["saved_extra_bytes_vs_gelu"]
        <= lam_bytes,
    }
    return {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            # 1-minute load average around the timed loop: other processes on the machine skew timings.
            "loadavg_1min": [load_before, load_after],
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "shape": list(shape),
            "dtype": "float32",
            "lambda": lam.item(),
            "warmup": warmup,
            "reps": reps,
            "compile_mode": compile_mode or "default",
            "compile_backend": compile_backend,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        },
        "targets": TARGETS,
        "checks": checks,
        "results": results,
    }


def format_table(report: dict) -> str:
    rows = [
        f"{'variant':<22} {'median ms':>10} {'x GELU':>7} {'peak MiB':>9} {'x GELU':>7} {'saved MiB':>10} {'saved +B':>9}"
    ]
    for name, r in report["results"].items():
        rows.append(
            f"{name:<22} {r['median_ms']:>10.2f} {r['time_ratio_to_gelu']:>7.2f} {r['peak_bytes'] / 2**20:>9.1f} "
            f"{r['peak_ratio_to_gelu']:>7.2f} {r['saved_bytes'] / 2**20:>10.2f} {r['saved_extra_bytes_vs_gelu']:>9d}"
        )
    meta = report["meta"]
    rows.append(
        f"(ratios: *_compiled vs gelu_compiled, others vs gelu_eager; shape {tuple(meta['shape'])} {meta['dtype']} "
        f"on {meta['device_name']}, {meta['torch_threads']} threads, median of {meta['reps']}, torch {meta['torch']}, "
        f"load avg {meta['loadavg_1min']})"
    )
    rows.append(
        "checks: " + ", ".join(f"{k}={v if isinstance(v, bool) else round(v, 3)}" for k, v in report["checks"].items())
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small tensor and few repetitions (smoke test)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"JSON output path (default {DEFAULT_OUT}; --quick: a temporary file)"
    )
    parser.add_argument("--reps", type=int, default=None, help="measured repetitions per variant (default 15; quick 5)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps per variant (default 3; quick 2)")
    parser.add_argument("--shape", type=int, nargs="+", default=None, help="input shape (default 64 128 1536)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode (default: the default mode)")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend (default inductor; aot_eager skips C++ compilation for smoke tests)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    shape = tuple(args.shape) if args.shape else (QUICK_SHAPE if args.quick else FULL_SHAPE)
    reps = args.reps if args.reps is not None else (5 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    if reps < 1 or warmup < 1:
        parser.error(f"--reps and --warmup must be ≥ 1 (got reps={reps}, warmup={warmup})")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be ≥ 1 (got {args.threads})")
        torch.set_num_threads(args.threads)
    report = run(
        shape,
        torch.device(args.device),
        warmup=warmup,
        reps=reps,
        compile_mode=args.compile_mode,
        compile_backend=args.compile_backend,
    )
    report["meta"]["quick"] = args.quick
    print(format_table(report))
    common.write_json(report, common.output_path(args.out, args.quick, DEFAULT_OUT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

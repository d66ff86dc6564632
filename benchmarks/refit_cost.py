"""Cost of the refit at real shapes: seconds and peak memory of the least-squares refit, beside one distillation
epoch over the same inputs, at BERT-base and GPT-2-medium shapes (random weights: cost does not depend on them).

Each shape runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own. Per shape:

- ``refit_seconds``: ``gelu_to_relu`` + ``refit_down_projections`` on ``--inputs`` random-token inputs of
  ``--seq`` tokens (batch ``--batch``);
- ``epoch_seconds``: one relufy distillation epoch (road ``swap``) over the same inputs and batch;
- ``ratio`` = refit / epoch (issue 23's target: ≤ 1/10 of an epoch on the same data; here the epoch is over the
  calibration inputs only, the refit's least favourable comparison);
- ``peak_rss_mb``: the process's peak resident memory over the model's own footprint after loading;
- ``stats_mb``: the float64 statistics of one layer, (d_ff + 1)² × 8 bytes.

Usage::

    python benchmarks/refit_cost.py                # BERT-base and GPT-2-medium → results/refit_cost.json
    python benchmarks/refit_cost.py --quick        # tiny shapes, seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_common as common
import torch

DEFAULT_OUT = common.RESULTS_DIR / "refit_cost.json"
SHAPES = {
    "bert_base": (
        "BertModel",
        "BertConfig",
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    ),  # fmt: skip
    "gpt2_medium": ("GPT2LMHeadModel", "GPT2Config", dict(n_embd=1024, n_layer=24, n_head=16)),
}
QUICK_SHAPES = {
    "bert_tiny": (
        "BertModel",
        "BertConfig",
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    ),  # fmt: skip
    "gpt2_tiny": ("GPT2LMHeadModel", "GPT2Config", dict(n_embd=32, n_layer=2, n_head=2)),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(shape: str, quick: bool, inputs: int, seq: int, batch: int, threads: int) -> dict:
    """One shape, in this process: the refit and one distillation epoch, side by side."""
    import copy

    import transformers

    from hf_lambda_gelu import RelufyArguments, gelu_to_relu, refit_down_projections, relufy
    from hf_lambda_gelu.distillation import frozen_copy

    torch.set_num_threads(threads)
    model_cls, config_cls, kwargs = (QUICK_SHAPES if quick else SHAPES)[shape]
    config = getattr(transformers, config_cls)(**kwargs)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config).eval()
    loaded = _rss_mb()
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(0, config.vocab_size, (seq,), generator=g)} for _ in range(inputs)]
    batches = [{"input_ids": torch.stack([d["input_ids"] for d in data[i : i + batch]])} for i in range(0, inputs, batch)]  # fmt: skip
    teacher, twin = frozen_copy(model), copy.deepcopy(model)
    start = time.perf_counter()
    gelu_to_relu(twin)
    report = refit_down_projections(twin, teacher, batches, progress=False)
    refit_seconds = time.perf_counter() - start
    refit_peak = _rss_mb() - loaded
    del teacher, twin
    with tempfile.TemporaryDirectory() as out:
        args = RelufyArguments(
            output_dir=out, road="swap", num_train_epochs=1, per_device_train_batch_size=batch, report_to="none",
            save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
        )  # fmt: skip
        start = time.perf_counter()
        relufy(model, data, args)
        epoch_seconds = time.perf_counter() - start
    d_ff = report.layers[0].tokens and (kwargs.get("intermediate_size") or 4 * kwargs["n_embd"])
    return {
        "shape": shape,
        "config": kwargs,
        "inputs": inputs,
        "seq": seq,
        "batch": batch,
        "layers": len(report.layers),
        "refit_seconds": refit_seconds,
        "epoch_seconds": epoch_seconds,
        "ratio": refit_seconds / epoch_seconds,
        "refit_peak_rss_over_model_mb": refit_peak,
        "peak_rss_mb": _rss_mb(),
        "model_rss_mb": loaded,
        "stats_mb": (d_ff + 1) ** 2 * 8 / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=2)
    parser.add_argument("--inputs", type=int, default=64, help="calibration (and distillation) inputs")
    parser.add_argument("--seq", type=int, default=128, help="tokens per input")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--shape", help=argparse.SUPPRESS)  # the worker: one shape in this process
    args = parser.parse_args(argv)
    if args.quick:
        args.inputs, args.seq = 16, 16
    if args.shape:
        row = measure(args.shape, args.quick, args.inputs, args.seq, args.batch, args.threads)
        print(json.dumps(row))
        return 0
    out = common.output_path(args.out, args.quick, DEFAULT_OUT)
    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        command = [sys.executable, __file__, "--shape", shape, "--inputs", str(args.inputs), "--seq", str(args.seq)]
        command += ["--batch", str(args.batch), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {"meta": common.machine_meta(args.quick), "random_weights": True, "rows": rows}
    common.write_json(results, out)
    header = ["shape", "layers", "refit s", "distil epoch s", "refit / epoch", "refit peak RSS MB", "stats MB"]
    table = [
        [r["shape"], str(r["layers"]), f"{r['refit_seconds']:.1f}", f"{r['epoch_seconds']:.1f}", f"{r['ratio']:.3f}",
         f"{r['refit_peak_rss_over_model_mb']:.0f}", f"{r['stats_mb']:.0f}"]
        for r in rows
    ]  # fmt: skip
    print(common.format_table(header, table))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

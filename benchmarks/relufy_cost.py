"""Cost of the relufy distillation on CPU: seconds per step and peak memory at MiniLM and BERT-base shapes, and how
they grow with sequence length and batch (random weights from configs: the cost does not depend on them).

Each cell of the grid runs in its own subprocess, so its peak resident memory (``ru_maxrss``) is its own. Per cell:
``relufy`` (road ``swap``, fp32, AdamW) for ``--steps`` steps on random-token inputs of ``seq`` tokens, batch ``batch``:

- ``step_s``, ``step_s_min``: median and fastest seconds of an optimizer step after one warm-up step
  (``relufy_timing.StepTimer``); on a shared machine the fastest is the least disturbed by other processes;
- ``teacher_share``: the median teacher forward over the median step;
- ``peak_rss_over_model_mb``: peak resident memory beyond the process after loading the model (student, its
  gradients and AdamW moments, the teacher copy, activations).

Grid: sequence 64, 128, 256 at batch 8, and batch 4, 16 at sequence 128.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/relufy_cost.py --threads 1   # → results/relufy_cost.json
    python benchmarks/relufy_cost.py --quick                          # tiny shapes, seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_common as common
import torch

DEFAULT_OUT = common.RESULTS_DIR / "relufy_cost.json"
SHAPES = {
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert_base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
QUICK_SHAPES = {"bert_tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)}
GRID = [(64, 8), (128, 8), (256, 8), (128, 4), (128, 16)]  # (seq, batch)
QUICK_GRID = [(16, 2), (32, 2), (16, 4)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(shape: str, quick: bool, seq: int, batch: int, steps: int, threads: int) -> dict:
    """One cell, in this process."""
    from relufy_timing import timed_relufy
    from transformers import BertConfig, BertModel

    from hf_lambda_gelu import RelufyArguments

    torch.set_num_threads(threads)
    config = BertConfig(**(QUICK_SHAPES if quick else SHAPES)[shape])
    torch.manual_seed(0)
    model = BertModel(config).eval()  # an embedder: hidden states + pooled embedding distilled
    loaded = _rss_mb()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch * steps, seq), generator=g)
    data = [{"input_ids": row, "attention_mask": torch.ones_like(row)} for row in ids]
    with tempfile.TemporaryDirectory() as out:
        args = RelufyArguments(
            output_dir=out, road="swap", max_steps=steps, per_device_train_batch_size=batch, report_to="none",
            save_strategy="no", logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
        )  # fmt: skip
        _, timings = timed_relufy(model, data, args, torch.device("cpu"), warmup=1)
    return {
        "shape": shape,
        "config": (QUICK_SHAPES if quick else SHAPES)[shape],
        "parameters": sum(p.numel() for p in model.parameters()),
        "seq": seq,
        "batch": batch,
        "step_s": timings["step_ms_median"] / 1e3,
        "step_s_min": timings["step_ms_min"] / 1e3,
        "teacher_share": timings["teacher_share"],
        "steps": timings["steps"],
        "model_rss_mb": loaded,
        "peak_rss_over_model_mb": _rss_mb() - loaded,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=1)
    parser.add_argument("--steps", type=int, default=6, help="steps per cell (the first is warm-up)")
    parser.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)  # the worker: SHAPE SEQ BATCH in this process
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 3
    if args.cell:
        shape, seq, batch = args.cell
        print(json.dumps(measure(shape, args.quick, int(seq), int(batch), args.steps, args.threads)))
        return 0
    out = common.output_path(args.out, args.quick, DEFAULT_OUT)
    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        for seq, batch in QUICK_GRID if args.quick else GRID:
            command = [sys.executable, __file__, "--cell", shape, str(seq), str(batch), "--steps", str(args.steps),
                       "--threads", str(args.threads)] + (["--quick"] if args.quick else [])  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{shape} seq {seq} batch {batch}: {rows[-1]['step_s']:.2f} s/step", flush=True)
    results = {"meta": common.machine_meta(args.quick), "random_weights": True, "road": "swap", "rows": rows}
    common.write_json(results, out)
    header = ["shape", "params (M)", "seq", "batch", "s / step (median)", "s / step (min)", "teacher share",
              "peak RSS over model (MB)"]  # fmt: skip
    table = [
        [r["shape"], f"{r['parameters'] / 1e6:.1f}", str(r["seq"]), str(r["batch"]), f"{r['step_s']:.2f}", f"{r['step_s_min']:.2f}",
         f"{r['teacher_share']:.2f}", f"{r['peak_rss_over_model_mb']:.0f}"]
        for r in rows
    ]  # fmt: skip
    print(common.format_table(header, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

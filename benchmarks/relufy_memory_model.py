"""The memory model of a relufy run (per GPU): student + optimizer, teacher, activations, refit statistics.

A calculation, not a measurement: ``python benchmarks/relufy_memory_model.py`` prints the table of
docs/relufy_memory.md and writes benchmarks/results/relufy_memory_model.json. What relufy holds (hf_lambda_gelu/relufy.py):

- student: float32 weights (a half-precision model is upcast to train), float32 gradients, AdamW's two float32
  moments: 16 bytes a parameter; sharded 1/W by FSDP2, replicated by DDP;
- teacher: a frozen copy in the checkpoint's dtype (4 bytes fp32 BERT/GPT-2 checkpoints, 2 bytes bf16 LLMs), run
  under the same autocast; sharded like the student under FSDP2;
- the original model itself stays in host memory (for the fidelity report): 1 copy, not on the GPU;
- activations (bf16 autocast, SDPA attention, no activation checkpointing): the student's ~34·s·b·d bytes a layer
  (Korthikanti et al. 2022, without the s² attention term), the teacher's kept hidden states (L+1)·s·b·d·2 bytes,
  and for a causal LM ~16 bytes a logit (student and teacher fp32 logits, the softmaxes of the KL, the gradient);
- the refit (float64 least squares, one layer at a time): XᵀX (d_ff²), XᵀY (d_ff·d) and the solve's copy (d_ff²),
  8 bytes each, on every rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_common import RESULTS_DIR, format_table, write_json

GB = 1e9
#: name: parameters, layers, d_model, d_ff, vocab, causal LM, checkpoint bytes/param, sequence, batch per GPU
MODELS = {
    "BERT-base": (110e6, 12, 768, 3072, 30522, False, 4, 512, 8),
    "BERT-large": (335e6, 24, 1024, 4096, 30522, False, 4, 512, 8),
    "GPT-2-XL": (1.56e9, 48, 1600, 6400, 50257, True, 4, 1024, 4),
    "7B GELU LLM (Falcon-7B shapes)": (6.92e9, 32, 4544, 18176, 65024, True, 2, 2048, 1),
}
SETUPS = (("1 GPU", 1, False), ("8 GPUs DDP", 8, False), ("8 GPUs FSDP2", 8, True))


def memory(name: str, world: int, fsdp: bool) -> dict[str, float]:
    """Gigabytes per GPU of each part of a relufy run (and the refit's statistics, and host memory)."""
    params, layers, d, d_ff, vocab, causal, dtype_bytes, seq, batch = MODELS[name]
    shard = world if fsdp else 1
    tokens = seq * batch
    activations = layers * 34 * tokens * d + (layers + 1) * tokens * d * 2 + (16 * tokens * vocab if causal else 0)
    parts = {
        "student_and_optimizer": 16 * params / shard,
        "teacher": dtype_bytes * params / shard,
        "activations": activations,
        "refit_statistics": 8 * (2 * d_ff * d_ff + d_ff * d),
        "host_original": dtype_bytes * params,
    }
    parts = {k: v / GB for k, v in parts.items()}
    parts["total_per_gpu"] = parts["student_and_optimizer"] + parts["teacher"] + parts["activations"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "relufy_memory_model.json")
    args = parser.parse_args()
    rows, report = [], {"models": {k: dict(zip(("params", "layers", "d_model", "d_ff", "vocab", "causal_lm",
                                                    "checkpoint_bytes", "seq", "batch"), v)) for k, v in MODELS.items()},
                        "gigabytes": {}}  # fmt: skip
    for name in MODELS:
        for setup, world, fsdp in SETUPS:
            parts = memory(name, world, fsdp)
            report["gigabytes"][f"{name} / {setup}"] = parts
            rows.append([name, setup, *(f"{parts[k]:.1f}" for k in ("student_and_optimizer", "teacher", "activations",
                                                                     "total_per_gpu", "refit_statistics"))])  # fmt: skip
    header = ["model", "setup", "student+AdamW", "teacher", "activations", "per GPU", "refit stats"]
    print(format_table(header, rows))
    write_json(report, args.out)


if __name__ == "__main__":
    main()

"""Worker of ``benchmarks/gpu_check.py``'s relufy section on several GPUs: ``relufy`` (road swap, bf16) of a
BERT-base-shaped classifier (random weights), launched by ``accelerate launch --config_file
recipes/configs/{multi_gpu,fsdp2_bert}.yaml --num_processes N`` (DDP, or FSDP2 with the teacher sharded like the
student). Each rank writes ``<OUT>/rank<k>.json``: steps/s, peak memory, the teacher's share of the step and the
fraction of the teacher's parameters it held. Also runs on CPU under ``torchrun`` (DDP with gloo) as a smoke test.

Usage: ``WORKER OUT STEPS WARMUP [tiny]``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from relufy_timing import timed_relufy
from transformers import BertConfig, BertForSequenceClassification

from hf_lambda_gelu import RelufyArguments

TINY = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def main(out: str, steps: str, warmup: str, size: str = "full") -> None:
    cpu = not torch.cuda.is_available()
    batch, seq = (4, 16) if size == "tiny" else (32, 128)
    args = RelufyArguments(
        output_dir=out, road="swap", max_steps=int(steps), per_device_train_batch_size=batch, bf16=True, use_cpu=cpu,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0,
    )  # fmt: skip
    device = args.device
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**(TINY if size == "tiny" else {}), num_labels=2)).eval()
    whole = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, model.config.vocab_size, (batch * args.world_size * int(steps), seq))
    data = [{"input_ids": row} for row in ids]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    twin, timings = timed_relufy(model, data, args, device, int(warmup))
    record = {
        "rank": args.process_index,
        "world_size": args.world_size,
        **timings,
        "peak_bytes": int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None,
        "teacher_fraction": timings["teacher_local_parameters"] / whole,
        "twin_hidden_act": twin.config.hidden_act,
    }
    Path(out, f"rank{args.process_index}.json").write_text(json.dumps(record))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo may abort during interpreter shutdown (PLATFORM.md)


if __name__ == "__main__":
    main(*sys.argv[1:])

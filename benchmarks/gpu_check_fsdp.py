"""Worker of ``benchmarks/gpu_check.py``'s FSDP2 section: a λ-GELU BERT trained a few steps under FSDP2 on the
default road (hardened, then ReLU), swapped to ``nn.ReLU``, its full checkpoint saved.

Two paths; the parent picks one and records which ran:

- ``trainer`` (GPU): ``LambdaGELUTrainer`` (its defaults) under ``accelerate launch --config_file
  recipes/configs/fsdp2_bert.yaml --num_processes 1``, as the recipes run; ``trainer.save_model`` gathers the
  full state dict.
- ``fully_shard`` (CPU): ``torch.distributed.fsdp.fully_shard`` per layer by hand under ``torchrun``, gloo, the
  λ group + λ update + ``HardeningCallback.update`` without the Trainer (through the Trainer on CPU accelerate
  silently runs DDP instead: /work/shared/PLATFORM.md); the full state dict gathered with
  ``get_model_state_dict``.

Writes ``<out>/release`` (the ReLU checkpoint), ``<out>/expected.pt`` (a batch and the sharded ReLU model's
logits on it) and ``<out>/record.json`` (what ran). Usage: ``WORKER {trainer,fully_shard} OUT {tiny,full}``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification

from hf_lambda_gelu import (
    HardeningCallback,
    LambdaGELUTrainer,
    LambdaGELUTrainingArguments,
    convert_to_lambda_gelu,
    hardness_profile,
    install_lambda_update,
    lambda_param_groups,
    reluize,
)

SIZES = {
    "tiny": dict(
        config=dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        batch=4,
        seq=16,
        steps=6,
    ),
    "full": dict(config={}, batch=8, seq=128, steps=10),  # BertConfig() is bert-base's shape
}


def _batches(config: BertConfig, size: dict, count: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.vocab_size, (count, size["seq"]), generator=g)
    return [{"input_ids": row, "labels": (row[0] % 2).long()} for row in ids]


def _probe(config: BertConfig) -> torch.Tensor:
    return torch.randint(1, config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(123))


def run_trainer(out: Path, size: dict) -> dict:
    """The recipes' road: LambdaGELUTrainer with its defaults, FSDP2 taken from the accelerate config."""
    config = BertConfig(**size["config"], num_labels=2)
    torch.manual_seed(0)
    args = LambdaGELUTrainingArguments(
        output_dir=str(out / "run"),
        max_steps=size["steps"],
        per_device_train_batch_size=size["batch"],
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    data = _batches(config, size, size["batch"] * size["steps"], seed=0)
    trainer = LambdaGELUTrainer(model=BertForSequenceClassification(config), args=args, train_dataset=data)
    trainer.train()
    probe = _probe(config)
    with torch.no_grad():
        logits = trainer.model.eval()(input_ids=probe.to(trainer.args.device)).logits.float().cpu()
    trainer.save_model(str(out / "release"))
    state = trainer.accelerator.state
    plugin = getattr(state, "fsdp_plugin", None)
    record = {
        "is_fsdp_enabled": bool(trainer.is_fsdp_enabled),
        "distributed_type": str(state.distributed_type),
        "fsdp_version": getattr(plugin, "fsdp_version", None),
        "world_size": trainer.args.world_size,
        "device": str(trainer.args.device),
        "hidden_act": trainer.model.config.hidden_act,
        "final_profile": trainer.final_profile,
    }
    if trainer.is_world_process_zero():
        torch.save({"input_ids": probe, "logits": logits}, out / "expected.pt")
    return record


def run_fully_shard(out: Path, size: dict) -> dict:
    """FSDP2 by hand (gloo): each BertLayer and the root sharded, the default road's schedule applied per step."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    config = BertConfig(**size["config"], num_labels=2)
    torch.manual_seed(0)
    model = convert_to_lambda_gelu(BertForSequenceClassification(config))
    for layer in model.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(lambda_param_groups(model, lr=5e-5, weight_decay=0.0, lambda_learning_rate=1e-2))
    install_lambda_update(optimizer, model)
    hardening = HardeningCallback()  # the default road: hardened from step 0 to λ* at 10 %, then ReLU
    steps = size["steps"]
    data = _batches(config, size, size["batch"] * steps, seed=dist.get_rank())
    for step in range(steps):
        hardening.update(model, step, steps)
        rows = data[step * size["batch"] : (step + 1) * size["batch"]]
        batch = {key: torch.stack([r[key] for r in rows]) for key in rows[0]}
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        hardening.update(model, step, steps)
    final_profile = hardness_profile(model)
    reluize(model)
    probe = _probe(config)
    with torch.no_grad():
        logits = model.eval()(input_ids=probe).logits
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.get_rank() == 0:
        release = BertForSequenceClassification(model.config)
        release.load_state_dict(state)
        release.save_pretrained(out / "release")
        torch.save({"input_ids": probe, "logits": logits}, out / "expected.pt")
    record = {
        "world_size": dist.get_world_size(),
        "backend": dist.get_backend(),
        "hidden_act": model.config.hidden_act,
        "final_profile": final_profile,
    }
    dist.barrier()
    return record


def main(path: str, out: str, size_name: str) -> None:
    out_dir = Path(out)
    size = SIZES[size_name]
    record = {"trainer": run_trainer, "fully_shard": run_fully_shard}[path](out_dir, size)
    if int(os.environ.get("RANK", "0")) == 0:
        record.update(path=path, size=size_name, steps=size["steps"], batch=[size["batch"], size["seq"]])
        (out_dir / "record.json").write_text(json.dumps(record, indent=2))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo may abort during interpreter shutdown after the work is done (PLATFORM.md)


if __name__ == "__main__":
    main(*sys.argv[1:])

"""Run by tests/test_fsdp2.py under ``torchrun --standalone --nproc_per_node 2`` (gloo, CPU).

FSDP2 (``torch.distributed.fsdp.fully_shard``) without the Trainer: a tiny λ-GELU BERT is sharded per
layer, trained with the λ parameter group and the optimizer-aware λ update, hardened with
``HardeningCallback.update`` (no Trainer), ReLU-ized; the full state dict is gathered on rank 0 and saved
as a ReLU checkpoint (``save_pretrained``). Each rank writes what it saw to ``<out>/rank<k>.json``.
"""

import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import BertConfig, BertForSequenceClassification

from hf_lambda_gelu import (
    HardeningCallback,
    convert_to_lambda_gelu,
    hardness_profile,
    install_lambda_update,
    lambda_param_groups,
    reluize,
)

STEPS = 8


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    model = convert_to_lambda_gelu(BertForSequenceClassification(config))
    for layer in model.bert.encoder.layer:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(lambda_param_groups(model, lr=1e-3, weight_decay=0.01, lambda_learning_rate=0.05))
    install_lambda_update(optimizer, model)
    hardening = HardeningCallback(hardening_start=0.5, relu_tolerance=1e-3)
    hardening.keep_pre_hardening_state = True  # the naive-swap baseline's weights, gathered from the shards
    generator = torch.Generator().manual_seed(rank)  # each rank its own batches
    trajectory = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(STEPS):
            hardening.update(model, step, STEPS)
            ids = torch.randint(1, 64, (8, 8), generator=generator)
            loss = model(input_ids=ids, labels=(ids[:, 0] > 32).long()).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            hardening.update(model, step, STEPS)  # the schedule's value of the step just taken
            trajectory.append(hardness_profile(model))
        reluize(model)
        ids = torch.arange(1, 17).reshape(2, 8)
        logits = model.eval()(input_ids=ids).logits.detach()  # the sharded ReLU model, every rank
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(model, options=options)
    package_warnings = [str(w.message) for w in caught if "hf_lambda_gelu" in (w.filename or "")]
    dtensor_warnings = [str(w.message) for w in caught if "DTensor" in str(w.message)]
    baseline = hardening.pre_hardening_state
    if rank == 0:
        hardening.save_pre_hardening_state(out)
        release = BertForSequenceClassification(model.config)
        release.load_state_dict(state)
        release.save_pretrained(os.path.join(out, "release"))
        torch.save({"input_ids": ids, "logits": logits}, os.path.join(out, "expected.pt"))
    record = {
        "world_size": dist.get_world_size(),
        "trajectory": trajectory,
        "hidden_act": model.config.hidden_act,
        "package_warnings": package_warnings,
        "dtensor_warnings": dtensor_warnings,
        "baseline_shapes": {k: list(v.shape) for k, v in baseline.items()},
        "release_shapes": {k: list(v.shape) for k, v in state.items()},
    }
    finish(out, record)


def finish(out: str, record: dict) -> None:
    """Write this rank's ``record`` as ``rank{N}.json`` in ``out``, wait for every rank, and exit at once."""
    with open(os.path.join(out, f"rank{dist.get_rank()}.json"), "w") as f:
        json.dump(record, f)
    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo may abort during interpreter shutdown (PLATFORM.md)


if __name__ == "__main__":
    main(sys.argv[1])

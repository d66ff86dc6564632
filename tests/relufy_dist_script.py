"""Run by tests/test_relufy_distributed.py under ``torchrun --standalone --nproc_per_node 2`` (gloo, CPU).

Modes (``MODE OUT``); each rank writes what it saw to ``<OUT>/rank<k>.json``:

- ``refit``: ``relufy(road="refit")`` with 4 distillation steps under DDP (the Trainer's own gloo group): the
  refit runs on every rank on the same calibration subset; records a digest of the refit and of the twin.
- ``fsdp2``: the student and the teacher sharded with ``fully_shard`` (``shard_blocks``, as ``RelufyTrainer`` does
  under an FSDP2 accelerate config; through the Trainer on CPU accelerate would silently run DDP), a few SGD
  steps on ``RelufyTrainer.compute_loss``, then ``gather_twin``; rank 0 saves the release (``save_release``, the
  gate) and the gathered twin's logits on a probe batch.
"""

import hashlib
import os
import sys

import torch
import torch.distributed as dist
from fsdp2_script import finish
from transformers import BertConfig, BertForSequenceClassification

from hf_lambda_gelu import RelufyArguments, RelufyTrainer, relufy, save_release
from hf_lambda_gelu.distillation import frozen_copy
from hf_lambda_gelu.fidelity import Pooling
from hf_lambda_gelu.relufy import _student
from hf_lambda_gelu.relufy_sharding import gather_twin, is_sharded, local_parameter_count, shard_blocks

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              max_position_embeddings=32, num_labels=2, initializer_range=0.2)  # fmt: skip


def _model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**CONFIG)).eval()


def _data(n: int) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(1, 64, (n, 8), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "attention_mask": torch.ones_like(row)} for row in ids]


def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _args(out: str, **overrides) -> RelufyArguments:
    return RelufyArguments(
        output_dir=out, per_device_train_batch_size=4, report_to="none", save_strategy="no", logging_strategy="no",
        disable_tqdm=True, use_cpu=True, ddp_backend="gloo", seed=0, **overrides,
    )  # fmt: skip


def run_refit(out: str) -> dict:
    # the refit alone (no Trainer, so no DDP broadcast from rank 0): each rank's own refit
    alone, report = relufy(_model(), _data(40), _args(out, road="refit", max_steps=0, calibration_size=24),
                           eval_dataset=_data(8))  # fmt: skip
    # then 4 distillation steps under DDP
    twin, _ = relufy(_model(), _data(40), _args(out, road="refit", max_steps=4, calibration_size=24))
    return {
        "world_size": dist.get_world_size(),
        "refit_digest": _digest(alone.state_dict()),
        "calibration_examples": report.training["calibration_examples"],
        "twin_digest": _digest(twin.state_dict()),
        "hidden_act": twin.config.hidden_act,
    }


def _train(trainer: RelufyTrainer, student: torch.nn.Module, data: list, rank: int, per_rank: int) -> list[float]:
    """SGD steps on ``RelufyTrainer.compute_loss``; step k takes rows [8k + rank·per_rank, + per_rank)."""
    optimizer = torch.optim.SGD(student.parameters(), lr=0.2)  # linear in the gradient: a clean comparison
    losses = []
    for step in range(len(data) // 8):
        rows = data[8 * step + per_rank * rank : 8 * step + per_rank * (rank + 1)]
        loss = trainer.compute_loss(student, {k: torch.stack([r[k] for r in rows]) for k in rows[0]})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def run_fsdp2(out: str) -> dict:
    dist.init_process_group("gloo")
    model = _model()
    args = _args(out, road="swap", max_steps=3)
    student, teacher = _student(model, args), frozen_copy(model)
    whole = {"student": local_parameter_count(student), "teacher": local_parameter_count(teacher)}
    trainer = RelufyTrainer(student, args, teacher=teacher, kind="classifier", pooling=Pooling())
    blocks = {"student": shard_blocks(student), "teacher": shard_blocks(trainer.teacher)}
    local = {"student": local_parameter_count(student), "teacher": local_parameter_count(trainer.teacher)}
    data, rank = _data(8 * args.max_steps), dist.get_rank()
    losses = _train(trainer, student, data, rank, 4)  # each rank its half of a global batch of 8
    sharded = is_sharded(student) and is_sharded(trainer.teacher)
    twin = gather_twin(student).eval()
    # the same steps in one process on the whole batches, nothing sharded
    reference = _student(model, args)
    _train(RelufyTrainer(reference, args, teacher=frozen_copy(model), kind="classifier", pooling=Pooling()),
           reference, data, 0, 8)  # fmt: skip
    twin_state, reference_state = twin.state_dict(), reference.state_dict()
    diff = max(float((twin_state[k] - reference_state[k]).abs().max()) for k in reference_state)
    probe = torch.arange(1, 17).reshape(2, 8)
    with torch.no_grad():
        logits = twin(input_ids=probe).logits
    if rank == 0:
        save_release(twin, os.path.join(out, "release"))
        torch.save({"input_ids": probe, "logits": logits}, os.path.join(out, "expected.pt"))
    return {
        "world_size": dist.get_world_size(),
        "sharded": sharded,
        "blocks": blocks,
        "whole_parameters": whole,
        "local_parameters": local,
        "losses": losses,
        "twin_digest": _digest(twin.state_dict()),
        "twin_is_sharded": is_sharded(twin),
        "max_abs_diff_to_one_process": diff,
        "hidden_act": twin.config.hidden_act,
    }


def main(mode: str, out: str) -> None:
    finish(out, {"refit": run_refit, "fsdp2": run_fsdp2}[mode](out))


if __name__ == "__main__":
    main(*sys.argv[1:])

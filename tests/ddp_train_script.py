"""Run by tests/test_distributed.py under torchrun / accelerate launch (2 CPU ranks, gloo).

Trains a tiny BERT with LambdaGELUTrainer (learning, hardening to λ* at 75 % of the run, ReLU
forwards after it, feature distillation to the original model, ReLU swap) and writes, per rank, the
λ trajectory and the relu_forward flags seen at every step end plus the final metrics to <out>/rank<k>.json.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from tiny_data import accuracy, text_dataset, tiny_bert, training_args  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_lambda_gelu import LambdaGELUTrainer, hardness_profile  # noqa: E402
from hf_lambda_gelu.activation import lambda_modules  # noqa: E402


class Record(TrainerCallback):
    def __init__(self):
        self.trajectory = []
        self.relu_forward = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.trajectory.append(hardness_profile(model))
        self.relu_forward.append(all(m.relu_forward for _, m in lambda_modules(model)))


def main(out: str) -> None:
    record = Record()
    args = training_args(
        out, max_steps=8, hardening_start=0.5, hardening_end=0.75, distill_alpha=1.0, per_device_train_batch_size=8,
        ddp_backend="gloo", ddp_find_unused_parameters=False,  # strict: a parameter without a gradient fails
    )  # fmt: skip
    data = text_dataset()
    trainer = LambdaGELUTrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=accuracy,
        callbacks=[record],
    )
    result = trainer.train()
    rank = args.process_index
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "world_size": args.world_size,
                "trajectory": record.trajectory,
                "relu_forward": record.relu_forward,
                "metrics": result.metrics,
                "hidden_act": trainer.model.config.hidden_act,
            },
            f,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo may abort during interpreter shutdown (PLATFORM.md)


if __name__ == "__main__":
    main(sys.argv[1])

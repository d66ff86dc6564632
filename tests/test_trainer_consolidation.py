"""LambdaGELUTrainer with hardening_end < 1: λ* early, exact ReLU forwards after it, resume, LR floor."""

import math

import pytest
import torch
from helpers import GraphCounter
from tiny_data import accuracy, text_dataset, tiny_bert, training_args
from transformers import TrainerCallback

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, LambdaGELU, LambdaGELUTrainer
from hf_lambda_gelu.activation import lambda_modules
from hf_lambda_gelu.window_logs import road_from_log_history


class Record(TrainerCallback):
    """Per step end: relu_forward flags, and whether every λ-GELU module computes exactly ReLU."""

    def __init__(self):
        self.flags, self.exact_relu = [], []
        self.x = torch.randn(4, 64)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        modules = [m for _, m in lambda_modules(model)]
        self.flags.append(all(m.relu_forward for m in modules))
        with torch.no_grad():
            self.exact_relu.append(all(torch.equal(m(self.x), torch.relu(self.x)) for m in modules))


def _losses(trainer):
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def _lambdas(trainer):
    return {
        h["step"]: [v for k, v in h.items() if k.startswith("lambda/")]
        for h in trainer.state.log_history
        if "loss" in h
    }


def test_hardening_end_reaches_target_then_trains_as_relu_and_swaps_for_free(tmp_path):
    record = Record()
    data = text_dataset()
    args = training_args(tmp_path, max_steps=12, logging_steps=1, hardening_start=0.25, hardening_end=0.5)
    trainer = LambdaGELUTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, compute_metrics=accuracy,
        callbacks=[record],
    )  # fmt: skip
    out = trainer.train()
    lams = _lambdas(trainer)
    target = trainer.args.target_lambda
    assert all(v < 2.0 for v in lams[3])  # learned, not hardened, before start_step = 3
    assert all(v == pytest.approx(target, rel=1e-5) for v in lams[6])  # λ* at end_step = round(0.5·12)
    assert all(lams[5][i] < lams[6][i] for i in range(len(lams[5])))
    assert record.flags == [False] * 6 + [True] * 6
    assert record.exact_relu == record.flags
    # the model was already ReLU: the final swap is exactly free; the naive baseline still runs
    report = trainer.reluization_report
    assert report.max_abs_logit_diff == 0.0 and report.prediction_agreement == 1.0
    assert report.before_swap["eval_loss"] == report.after_swap["eval_loss"]
    assert report.naive_swap is not None and math.isfinite(out.metrics["naive_swap_max_abs_logit_diff"])
    assert report.settings["hardening_end"] == 0.5
    assert trainer.model.config.hidden_act == "relu"
    # the profile plot shows the road (λ per layer over the 12 steps) under the profile
    road = road_from_log_history(trainer.state.log_history)
    assert len(road["lambda"]) == 2 and all(len(points) == 12 for points in road["lambda"].values())
    png = (tmp_path / "hardness_profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[20:24], "big") == 2 * 456
    assert not any(isinstance(m, LambdaGELU) for m in trainer.model.modules())


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", [4, 8])  # mid-window, mid-consolidation
def test_resume_with_hardening_end_follows_the_same_run(tmp_path, checkpoint):
    common = dict(
        max_steps=10, logging_steps=1, reluize_at_end=False, hardening_start=0.3, hardening_end=0.6,
        hardening_lr_floor=0.9,
    )  # fmt: skip
    data = text_dataset()
    full = LambdaGELUTrainer(
        model=tiny_bert(),
        args=training_args(tmp_path / "full", save_strategy="steps", save_steps=checkpoint, **common),
        train_dataset=data,
    )
    full.train()
    record = Record()
    resumed = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "resumed", **common), train_dataset=data, callbacks=[record]
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{checkpoint}"))
    steps = range(checkpoint + 1, 11)
    assert record.flags == [s > 6 for s in steps]
    a, b = _losses(full), _losses(resumed)
    assert max(abs(a[s] - b[s]) for s in steps) <= 1e-6
    lr = [{h["step"]: h["learning_rate"] for h in t.state.log_history if "learning_rate" in h} for t in (full, resumed)]
    assert lr[0][5] == pytest.approx(0.9e-3) and all(lr[0][s] == lr[1][s] for s in steps)  # floor kept on resume
    la, lb = _lambdas(full), _lambdas(resumed)
    assert max(abs(x - y) for s in steps for x, y in zip(la[s], lb[s])) <= 1e-6


def test_hardening_lr_floor_lifts_the_learning_rate_in_the_window_only(tmp_path):
    args = training_args(
        tmp_path, max_steps=10, logging_steps=1, reluize_at_end=False, hardening_start=0.5, hardening_end=0.8,
        hardening_lr_floor=0.7,
    )  # fmt: skip
    trainer = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset())
    trainer.train()
    lrs = {h["step"]: h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h}
    base = args.learning_rate
    # linear decay: step k uses base·(1 − (k−1)/10); the window is steps 6..8 (floor 0.7·base), ReLU after it
    decay = {k: 1 - (k - 1) / 10 for k in range(1, 11)}
    expected = {k: base * (max(m, 0.7) if 6 <= k <= 8 else m) for k, m in decay.items()}
    assert expected[5] == pytest.approx(0.6 * base) and expected[9] == pytest.approx(0.2 * base)
    assert lrs == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_hardness_pressure_adds_c_over_lambda_and_raises_lambda_while_it_learns(tmp_path):
    common = dict(
        max_steps=8, logging_steps=1, reluize_at_end=False, hardening_start=0.5, hardening_end=1.0, distill_alpha=0.0
    )  # fmt: skip
    plain = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "a", **common), train_dataset=text_dataset()
    )
    plain.train()
    beta = 0.5
    args = training_args(tmp_path / "b", hardness_pressure=beta, **common)
    pressed = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset())
    pressed.train()
    # step 1: same model and batch; the loss adds β·Σ_l c/λ_l with λ ≈ 1 in both layers
    assert _losses(pressed)[1] - _losses(plain)[1] == pytest.approx(beta * 2 * RELU_DISTANCE_CONSTANT, rel=1e-4)
    assert all(p > q for p, q in zip(_lambdas(pressed)[4], _lambdas(plain)[4]))  # λ pushed up while learning
    assert pressed.hardening.started and not pressed.extra_loss_active()  # off once hardening pins λ
    assert all(v == pytest.approx(args.target_lambda, rel=1e-5) for v in _lambdas(pressed)[8])


@pytest.mark.slow
def test_compiled_model_recompiles_once_for_the_relu_forward(tmp_path):
    counter = GraphCounter()
    model = tiny_bert()
    model.compile(backend=counter.backend)
    args = training_args(tmp_path, max_steps=10, reluize_at_end=False, hardening_start=0.2, hardening_end=0.5)
    LambdaGELUTrainer(model=model, args=args, train_dataset=text_dataset(), callbacks=[counter.callback()]).train()
    counts = counter.counts
    # steps 3..5 harden without new graphs; step 6 is the first ReLU forward: one new graph set, then none
    assert counts[2:5] == [counts[2]] * 3 and counts[5] > counts[4] and counts[5:] == [counts[5]] * 5, counts

import json
import math

import pytest
import torch
from helpers import GraphCounter
from peft import LoraConfig, PeftModel, get_peft_model
from tiny_data import (
    accuracy,
    image_dataset,
    lm_dataset,
    text_dataset,
    tiny_bert,
    tiny_gpt2,
    tiny_vit,
    training_args,
)
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hf_lambda_gelu import (
    LambdaGELU,
    LambdaGELUTrainer,
    LambdaGELUTrainingArguments,
    add_lambda_modules_to_save,
    convert_to_lambda_gelu,
    hardness_profile,
)

CASES = {
    "bert": (tiny_bert, text_dataset, "hidden_act"),
    "vit": (tiny_vit, image_dataset, "hidden_act"),
    "gpt2": (tiny_gpt2, lm_dataset, "activation_function"),
}


def _lambda_logs(log_history):
    return [(h["step"], {k: v for k, v in h.items() if k.startswith("lambda/")}) for h in log_history if "loss" in h]


@pytest.mark.parametrize("arch", sorted(CASES))
def test_end_to_end_produces_relu_model_profile_and_report(tmp_path, arch):
    make_model, make_data, act_key = CASES[arch]
    model = make_model()  # plain GELU: the trainer converts it
    data = make_data()
    metrics = accuracy if arch != "gpt2" else None
    trainer = LambdaGELUTrainer(
        model=model, args=training_args(tmp_path), train_dataset=data, eval_dataset=data, compute_metrics=metrics
    )
    assert any(isinstance(m, LambdaGELU) for m in model.modules())
    out = trainer.train()

    assert getattr(model.config, act_key) == "relu"
    assert not any(isinstance(m, LambdaGELU) for m in model.modules())
    # λ pinned and equal in every layer: one `lambda` entry per log; the window (step 1) is logged too
    logs = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    assert sorted(logs) == [1, 2, 4, 6, 8] and not _lambda_logs(trainer.state.log_history)[0][1]
    assert all(h["lambda"] == pytest.approx(trainer.args.target_lambda, rel=1e-5) for h in logs.values())
    profile = json.loads((tmp_path / "hardness_profile.json").read_text())
    assert profile  # written before the swap
    assert (tmp_path / "hardness_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "reluization_report.json").read_text())
    assert report["max_error_bound"] == pytest.approx(1e-3, rel=1e-4)
    for key in ("reluize_max_abs_logit_diff", "reluize_prediction_agreement"):
        assert key in out.metrics and math.isfinite(out.metrics[key])
    assert report["before_swap"]["eval_loss"] == pytest.approx(report["after_swap"]["eval_loss"], abs=1e-3)
    assert out.metrics["reluize_max_abs_logit_diff"] < 0.05
    assert "naive_swap" not in report and "untouched starting checkpoint" in report["naive_swap_unavailable"]
    assert any("reluize_max_abs_logit_diff" in h for h in trainer.state.log_history)
    # the ReLU model saves and reloads as a plain transformers model
    trainer.save_model(str(tmp_path / "final"))
    reloaded = type(model).from_pretrained(str(tmp_path / "final"))
    assert getattr(reloaded.config, act_key) == "relu"


def test_lambda_is_learned_then_hardened_and_uses_its_own_group(tmp_path):
    model = tiny_bert()
    trainer = LambdaGELUTrainer(
        model=model,
        args=training_args(
            tmp_path,
            max_steps=12,
            logging_steps=1,
            reluize_at_end=False,
            hardening_start=0.5,
            hardening_end=1.0,
            distill_alpha=0.0,  # distillation to the GELU original holds λ at 1 (its gradient points below 1)
        ),
        train_dataset=text_dataset(),
    )
    trainer.train()
    lam_groups = [g for g in trainer.optimizer.param_groups if g.get("lambda_group")]
    assert len(lam_groups) == 1 and lam_groups[0]["weight_decay"] == 0.0
    logs = dict(_lambda_logs(trainer.state.log_history))
    assert max(abs(v - 1.0) for v in logs[6].values()) > 1e-3  # learned before hardening
    layer = next(iter(logs[1]))
    hard = [logs[s][layer] for s in range(7, 13)]
    assert all(b > a for a, b in zip(hard, hard[1:])) and hard[-1] == pytest.approx(trainer.args.target_lambda)
    assert hardness_profile(model)[layer.removeprefix("lambda/")] == pytest.approx(trainer.args.target_lambda)


@pytest.mark.slow
def test_zero_lambda_learning_rate_keeps_lambda_until_hardening(tmp_path):
    model = tiny_bert()
    args = training_args(
        tmp_path, max_steps=8, logging_steps=1, reluize_at_end=False, lambda_learning_rate=0.0,
        hardening_start=0.75, hardening_end=1.0,
    )  # fmt: skip
    trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=text_dataset())
    trainer.train()
    logs = dict(_lambda_logs(trainer.state.log_history))
    assert all(v == pytest.approx(1.0, abs=1e-5) for step in range(1, 7) for v in logs[step].values())
    assert all(v == pytest.approx(trainer.args.target_lambda) for v in logs[8].values())


def test_plain_training_arguments_are_upgraded_keeping_the_hub_token(tmp_path):
    plain = TrainingArguments(output_dir=str(tmp_path), report_to="none", hub_token="hf_secret", learning_rate=3e-4)
    trainer = LambdaGELUTrainer(model=tiny_bert(), args=plain)
    assert isinstance(trainer.args, LambdaGELUTrainingArguments)
    assert trainer.args.hub_token == "hf_secret" and trainer.args.learning_rate == 3e-4
    assert (trainer.args.hardening_start, trainer.args.hardening_end, trainer.args.distill_alpha) == (0.0, 0.1, 1.0)
    with pytest.raises(TypeError, match="LambdaGELUTrainingArguments"):
        LambdaGELUTrainer(model=tiny_bert(), args={"output_dir": str(tmp_path)})


@pytest.mark.slow
def test_hardening_start_one_learns_lambda_to_the_end_and_keeps_a_lambda_gelu_model(tmp_path):
    data = text_dataset()
    args = training_args(tmp_path, hardening_start=1.0, max_steps=6, distill_alpha=0.0)  # distillation holds λ at 1
    trainer = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    logs = _lambda_logs(trainer.state.log_history)
    modules = [m for m in trainer.model.modules() if isinstance(m, LambdaGELU)]
    assert modules and not any(m.is_pinned for m in modules)  # never hardened, never swapped
    assert trainer.model.config.hidden_act == "lambda_gelu" and trainer.reluization_report is None
    assert not trainer.hardening.started and not (tmp_path / "reluization_report.json").exists()
    assert logs[-1][1] != logs[-2][1]  # λ still learning at the last steps
    assert all(v < 10 for v in logs[-1][1].values())
    assert (tmp_path / "hardness_profile.json").is_file()
    with pytest.raises(ValueError, match="hardening_start=1.0"):
        trainer.push_to_hub()
    trainer.save_model(str(tmp_path / "model"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")  # the package is imported
    assert hardness_profile(reloaded) == hardness_profile(trainer.model)
    ids = torch.randint(1, 64, (2, 8))
    torch.testing.assert_close(reloaded.eval()(ids).logits, trainer.model.eval()(ids).logits, rtol=0, atol=0)


@pytest.mark.slow
def test_resume_mid_hardening_follows_the_same_trajectory(tmp_path):
    common = dict(max_steps=12, logging_steps=1, reluize_at_end=False, hardening_start=0.5, save_steps=8)
    data = text_dataset()
    full = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "full", save_strategy="steps", **common), train_dataset=data
    )
    full.train()
    resumed = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "resumed", save_strategy="no", **common), train_dataset=data
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-8"))
    a, b = dict(_lambda_logs(full.state.log_history)), dict(_lambda_logs(resumed.state.log_history))
    assert set(range(9, 13)) <= set(b)
    worst = max(abs(a[s][k] - b[s][k]) for s in range(9, 13) for k in a[s])
    assert worst <= 1e-6
    pa, pb = hardness_profile(full.model), hardness_profile(resumed.model)
    assert max(abs(pa[k] - pb[k]) for k in pa) <= 1e-6


@pytest.mark.slow
def test_resume_without_pre_hardening_weights_says_the_baseline_is_unavailable(tmp_path):
    from hf_lambda_gelu.hardening import PRE_HARDENING_WEIGHTS_NAME
    from hf_lambda_gelu.release.card import build_model_card

    common = dict(max_steps=8, hardening_start=0.5, save_strategy="steps", save_steps=6)
    data = text_dataset(n=32)
    first = LambdaGELUTrainer(model=tiny_bert(), args=training_args(tmp_path / "a", **common), train_dataset=data)
    first.train()
    weights = tmp_path / "a" / "checkpoint-6" / PRE_HARDENING_WEIGHTS_NAME
    assert weights.is_file()  # written at every save after hardening started
    weights.unlink()  # e.g. a checkpoint from an older version
    resumed = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "b", **common), train_dataset=data, eval_dataset=data
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-6"))
    report = resumed.reluization_report
    assert report.naive_swap is None and PRE_HARDENING_WEIGHTS_NAME in report.naive_swap_unavailable
    card = build_model_card(model=resumed.model.config, report=report).text
    assert "naive GELU → ReLU swap baseline is unavailable" in card and "checkpoint-6" in card


@pytest.mark.slow
def test_compiled_model_does_not_recompile_on_schedule_steps(tmp_path):
    counter = GraphCounter()
    model = tiny_bert()
    model.compile(backend=counter.backend)
    args = training_args(
        tmp_path, max_steps=10, reluize_at_end=False, hardening_start=0.2, hardening_end=1.0, logging_steps=5
    )
    trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=text_dataset(), callbacks=[counter.callback()])
    trainer.train()
    # the first steps compile (BERT sets config.problem_type on its first call); after that the
    # schedule moves λ every step without a single new graph
    counts = counter.counts
    assert counts[0] >= 1 and counts[2:] == [counts[2]] * (len(counts) - 2), counts
    lams = [next(iter(p.values())) for _, p in counter.per_step[2:]]
    assert len(set(lams)) == len(lams)


def test_peft_lora_lambda_trains_saves_and_restores(tmp_path):
    base = convert_to_lambda_gelu(tiny_bert())
    lora = add_lambda_modules_to_save(LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4), base)
    model = get_peft_model(base, lora)
    args = training_args(tmp_path, max_steps=6, reluize_at_end=False, hardening_start=0.99)
    trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=text_dataset())
    trainer.train()
    trained = hardness_profile(model)
    learned = {k: v for k, v in trained.items() if "modules_to_save" in k}
    assert learned and all(abs(v - 1.0) > 1e-4 for v in learned.values())
    model.save_pretrained(str(tmp_path / "adapter"))
    fresh = convert_to_lambda_gelu(tiny_bert())
    restored = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    again = hardness_profile(restored)
    for name, value in learned.items():
        assert again[name] == pytest.approx(value, abs=1e-7)


@pytest.mark.slow
def test_peft_wrapped_model_is_reluized_at_end(tmp_path):
    base = convert_to_lambda_gelu(tiny_bert())
    lora = add_lambda_modules_to_save(LoraConfig(task_type="SEQ_CLS", target_modules=["query", "value"], r=4), base)
    model = get_peft_model(base, lora)
    data = text_dataset()
    trainer = LambdaGELUTrainer(
        model=model, args=training_args(tmp_path), train_dataset=data, eval_dataset=data, compute_metrics=accuracy
    )
    out = trainer.train()
    merged = model.merge_and_unload()
    assert merged.config.hidden_act == "relu" and not any(isinstance(m, LambdaGELU) for m in merged.modules())
    assert out.metrics["reluize_prediction_agreement"] > 0.9


def test_resume_with_restore_callback_states_keeps_schedule_and_naive_baseline(tmp_path):
    """transformers' own callback restore (a new HardeningCallback instance) changes nothing."""
    common = dict(max_steps=8, hardening_start=0.5, save_strategy="steps", save_steps=6)
    data = text_dataset(n=32)
    full = LambdaGELUTrainer(
        model=tiny_bert(), args=training_args(tmp_path / "a", **common), train_dataset=data, eval_dataset=data
    )
    full.train()
    args = training_args(tmp_path / "b", restore_callback_states_from_checkpoint=True, **common)
    resumed = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data)
    before = resumed.hardening
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-6"))
    assert resumed.hardening is not before and resumed.hardening.start_step == 4  # the restored instance
    assert resumed.hardening.keep_pre_hardening_state and resumed.naive_swap_unavailable is None
    a, b = full.reluization_report, resumed.reluization_report
    assert b.lambdas == pytest.approx(a.lambdas, rel=1e-6)
    assert b.naive_swap.prediction_agreement == pytest.approx(a.naive_swap.prediction_agreement)

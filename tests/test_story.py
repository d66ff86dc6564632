"""What a run's card, plot, report and logs say matches the settings it ran with (issue 19, "what users see")."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from matplotlib.figure import Figure
from tiny_data import accuracy, text_dataset, tiny_bert, training_args

import hf_lambda_gelu
from hf_lambda_gelu import LambdaGELUTrainer, save_release
from hf_lambda_gelu.errors import InertSettingWarning
from hf_lambda_gelu.trainer import NAIVE_SWAP_AT_STEP_0
from hf_lambda_gelu.window_logs import window_log_steps


@pytest.fixture
def figures(monkeypatch):
    """Every matplotlib Figure saved during the test, to read what the plots drew."""
    saved = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _panels(figure: Figure) -> list[dict[str, list]]:
    """Per axes (twin loss axes merged into the panel above them): line label → y data."""
    panels = []
    for ax in figure.axes:
        lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        if ax.get_ylabel() == "loss":
            panels[-1].update(lines)
        else:
            panels.append(lines)
    return panels


def _train(tmp_path, **overrides) -> LambdaGELUTrainer:
    data = text_dataset(n=32)
    settings = dict(max_steps=20, logging_steps=5, eval_strategy="steps", eval_steps=10)
    args = training_args(tmp_path / "out", **{**settings, **overrides})
    trainer = LambdaGELUTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, compute_metrics=accuracy
    )
    trainer.train()
    return trainer


def test_default_run_says_lambda_was_pinned_everywhere(tmp_path, figures, recwarn):
    trainer = _train(tmp_path)  # the defaults: hardening from step 0 to 10 % (step 2), then ReLU, distillation α=1
    target = trainer.args.target_lambda
    if not torch.accelerator.is_available():  # no DataLoader warning about pinning memory without an accelerator
        assert not trainer.args.dataloader_pin_memory
        assert not [w for w in recwarn if "pin_memory" in str(w.message)]

    # log lines: one λ (every layer has the same), logged through the window (steps 1, 2), not per layer
    logs = {h["step"]: h for h in trainer.state.log_history if "loss" in h}
    assert sorted(logs) == [1, 2, 5, 10, 15, 20]
    assert not any(k.startswith("lambda/") for h in logs.values() for k in h)
    assert 1.0 < logs[1]["lambda"] < logs[2]["lambda"] == pytest.approx(target, rel=1e-5)

    # the report: no learned profile, no naive baseline of the untouched start (and why), the road in steps
    report = json.loads((tmp_path / "out" / "reluization_report.json").read_text())
    assert "learned_lambdas" not in report and "naive_swap" not in report
    assert report["naive_swap_unavailable"] == NAIVE_SWAP_AT_STEP_0
    assert report["road"]["hardening_steps"] == [0, 2] and report["road"]["max_steps"] == 20
    assert [h["step"] for h in report["road"]["log_history"] if "lambda" in h] == [1, 2, 5, 10, 15, 20]

    release = save_release(trainer.model, tmp_path / "release", report=trainer.reluization_report)
    card = (release / "README.md").read_text()
    assert "was pinned (not learned) and hardened deterministically from λ = 1 towards λ* = 170" in card
    assert "λ pinned from the first step at λ = 1 (not learned)" in card
    assert "to λ* = 170 by 10 % of training (step 2)" in card
    assert "the remaining 18 steps trained with exact ReLU forwards (consolidation)" in card
    assert "feature distillation to the original model (α = 1)" in card
    assert "was learned" not in card and "λ learned" not in card and "| λ learning rate |" not in card
    assert "Naive GELU → ReLU swap |" not in card
    assert f"The naive GELU → ReLU swap baseline is unavailable for this release: {NAIVE_SWAP_AT_STEP_0}." in card
    assert "| Layer | λ at the swap | c/λ |" in card
    assert "learned_lambdas" not in json.loads((release / "hardness_profile.json").read_text())

    # the release's plot (the last one drawn): the profile without a "learned" line, and the road through the window
    profile_panel, road_panel = _panels(figures[-1])
    assert not any("learned" in label for label in profile_panel)
    road = road_panel["λ (all layers)"]
    assert road[0] < road[1] == pytest.approx(target, rel=1e-5) and road[0] > 1.0
    assert "train loss" in road_panel and "eval loss" in road_panel


def test_learned_run_shows_what_lambda_learned(tmp_path, figures):
    trainer = _train(tmp_path, hardening_start=0.5, hardening_end=0.75, distill_alpha=0.0, logging_steps=2)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert all(sum(k.startswith("lambda/") for k in h) == 2 and "lambda" not in h for h in logs)  # per layer
    assert {h["step"] for h in logs} >= window_log_steps(10, 15)

    report = trainer.reluization_report
    assert report.learned_lambdas and any(v > 1.0 for v in report.learned_lambdas.values())  # λ moved
    assert report.naive_swap is not None and report.naive_swap_unavailable is None
    assert report.road["hardening_steps"] == [10, 15]
    release = save_release(trainer.model, tmp_path / "release", report=report)
    card = (release / "README.md").read_text()
    assert "was learned per layer, then hardened deterministically towards λ* = 170" in card
    assert (
        "λ learned per layer (λ = 1 + softplus(s/τ), λ learning rate 0.05) for the first 50 % of training (step 10)"
        in card
    )
    assert "by 75 % of training (step 15)" in card and "the remaining 5 steps trained with exact ReLU" in card
    assert "no distillation" in card and "| λ learning rate | 0.05 |" in card
    assert "| Layer | λ learned (before hardening) | λ at the swap | c/λ |" in card
    assert "| Naive GELU → ReLU swap |" in card
    profile_panel, road_panel = _panels(figures[-1])
    assert profile_panel["λ learned (before hardening)"] == pytest.approx(list(report.learned_lambdas.values()))
    assert len([label for label in road_panel if label.startswith("λ ")]) == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [("relu_target_per_layer", True), ("hardness_pressure", 0.1), ("naive_swap_baseline", True)],
)
def test_a_setting_that_does_nothing_under_the_defaults_warns(tmp_path, setting, value):
    with pytest.warns(InertSettingWarning, match=rf"^{setting}={value!r} does nothing here: .*hardening_start") as got:
        args = training_args(tmp_path, **{setting: value})
    assert len(got) == 1
    assert args.naive_swap_baseline is False  # not measured at hardening_start=0, whatever was asked
    with warnings.catch_warnings():
        warnings.simplefilter("error", InertSettingWarning)
        acting = training_args(tmp_path, hardening_start=0.5, **{setting: value})  # now it acts: no warning
        assert acting.naive_swap_baseline is True
        training_args(tmp_path)  # the defaults: nothing to warn about


def test_hardness_pressure_without_a_lambda_learning_rate_warns(tmp_path):
    with pytest.warns(InertSettingWarning, match="hardness_pressure=0.1 does nothing here"):
        training_args(tmp_path, hardening_start=0.5, lambda_learning_rate=0.0, hardness_pressure=0.1)


def test_version_flag_prints_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "hf_lambda_gelu.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"hf-lambda-gelu {hf_lambda_gelu.__version__}"


def test_the_demo_does_not_print_the_load_report_of_its_new_head(tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification

    from hf_lambda_gelu.demo import _checkpoint

    def reports() -> list[str]:
        return [r.getMessage() for r in caplog.records if "LOAD REPORT" in r.getMessage()]

    tiny_bert().bert.save_pretrained(tmp_path / "base")  # a checkpoint without a classification head
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    assert len(reports()) == 1 and "classifier.weight" in reports()[0]  # what transformers prints for the new head
    model = _checkpoint(str(tmp_path / "base"), 0, ["negative", "positive"])
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert len(reports()) == 1


def test_profiling_run_plots_lambda_on_its_own_range(tmp_path, figures):
    """hardening_start=1.0 (λ learned to the end, nothing hardened): no λ* line squashing a 1.0-1.2 profile."""
    trainer = _train(tmp_path, hardening_start=1.0, distill_alpha=0.0)
    assert trainer.model.config.hidden_act == "lambda_gelu"  # kept λ-GELU: nothing to swap
    profile_panel = _panels(figures[-1])[0]
    assert not any(label.startswith("target λ*") for label in profile_panel)
    assert profile_panel["λ per layer (final)"] == pytest.approx(list(trainer.final_profile.values()))
    assert json.loads((tmp_path / "out" / "hardness_profile.json").read_text())["target_lambda"] > 100

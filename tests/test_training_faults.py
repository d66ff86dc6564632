"""Issue 18's training-time faults: settings that cannot train, non-finite losses, bf16/fp16 releases, resuming a
finished run, and the Hub token in checkpoints. Tiny BERT, CPU, seconds each."""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset
from fake_hub import TOKEN, install_fake_hub
from safetensors.torch import load_file
from tiny_data import accuracy, text_dataset, tiny_bert, training_args

from hf_lambda_gelu import (
    HardeningCallback,
    InvalidSettingError,
    LambdaGELUConfig,
    LambdaGELUTrainer,
    NonFiniteLossError,
    convert_to_lambda_gelu,
)


def _trainer(out, model=None, data=None, **overrides) -> LambdaGELUTrainer:
    data = text_dataset(n=40) if data is None else data
    return LambdaGELUTrainer(
        model=tiny_bert() if model is None else model,
        args=training_args(out, **overrides),
        train_dataset=data,
        eval_dataset=data,
        compute_metrics=accuracy,
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [({"relu_tolerance": 1e-300}, "relu_tolerance"), ({"relu_tolerance": 0.5}, "relu_tolerance"),
     ({"relu_tolerance": math.nan}, "relu_tolerance"), ({"relu_target_lambda": 1e39}, "relu_target_lambda"),
     ({"relu_target_lambda": math.inf}, "relu_target_lambda"), ({"hardening_start": math.nan}, "hardening_start")],
)  # fmt: skip
def test_hardening_callback_refuses_a_target_that_cannot_be_reached(kwargs, field):
    """λ* = c/ε < 1, or λ* beyond float32, used to be accepted and to fail only at the end of training."""
    with pytest.raises(InvalidSettingError, match=f"^{field}=") as err:
        HardeningCallback(**kwargs)
    assert err.value.name == field


# -- 6: resuming from a finished run's last checkpoint ---------------------------------------------------------------
def test_resuming_from_the_final_checkpoint_takes_no_step_and_still_ends_the_run(tmp_path):
    """40 examples in batches of 16: 8 steps are not a whole number of epochs, where upstream takes a 9th step.
    Hardening ends at the last step, so the last forward ran λ-GELU at λ* (not the ReLU of the steps after it)."""
    out = tmp_path / "out"
    settings = dict(max_steps=8, save_strategy="steps", save_steps=4, lr_scheduler_type="constant", hardening_end=1.0)
    first = _trainer(out, **settings)
    first.train()
    final = load_file(str(out / "checkpoint-8" / "model.safetensors"))
    for name in ("reluization_report.json", "hardness_profile.json"):
        (out / name).unlink()

    resumed = _trainer(out, **settings)
    output = resumed.train(resume_from_checkpoint=str(out / "checkpoint-8"))
    assert output.global_step == 8 and not (out / "checkpoint-9").exists()
    weights = resumed.model.state_dict()
    compared = [name for name in final if "lambda_raw" not in name]
    assert compared and set(compared) <= set(weights)
    for name in compared:
        torch.testing.assert_close(weights[name], final[name], rtol=0, atol=0, msg=name)
    # the end-of-training work ran: profile, swap to ReLU, report (equal to the uninterrupted run's)
    assert resumed.model.config.hidden_act == "relu"
    assert resumed.final_profile == pytest.approx(first.final_profile)
    report = json.loads((out / "reluization_report.json").read_text())
    for key in ("before_swap", "after_swap", "max_abs_logit_diff"):
        assert report[key] == pytest.approx(first.reluization_report.to_dict()[key], rel=1e-6, abs=1e-9), key
    assert report["swapped"] and (out / "hardness_profile.json").is_file()


# -- 7: the Hub token never lands in a checkpoint -------------------------------------------------------------------
@pytest.mark.slow
def test_checkpoints_never_hold_the_hub_token_and_push_still_uses_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    trainer = _trainer(out, save_strategy="steps", save_steps=4, hub_token=TOKEN, hub_model_id="me/tiny-relu")
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))  # a user's own save too
    saved = sorted(out.glob("checkpoint-*/training_args.bin")) + [tmp_path / "saved" / "training_args.bin"]
    assert len(saved) == 3
    for path in saved:
        assert TOKEN.encode() not in path.read_bytes(), path
        assert torch.load(path, weights_only=False).hub_token is None
    assert trainer.args.hub_token == TOKEN
    hub = install_fake_hub(monkeypatch, tmp_path / "remote")
    trainer.push_to_hub()
    assert hub.kwargs_of("HfApi")["token"] == TOKEN


# -- 9: mixed precision ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "precision, device",
    [("bf16", "cpu"), ("fp16", "cpu"),
     pytest.param("fp16", "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)  # fmt: skip
def test_mixed_precision_training_releases_through_the_gate(tmp_path, monkeypatch, precision, device):
    """bf16 autocast runs on CPU, so bf16 on CPU reproduces the fault (accelerate's autocast wrapper left on
    model.forward: the gate compared bf16 outputs with an fp32 reload). fp16 on CPU trains in fp32 (accelerate
    installs no autocast there), so that case only checks that the setting releases; CUDA runs the fp16 wrapper."""
    trainer = _trainer(tmp_path / "out", use_cpu=device == "cpu", **{precision: True})
    trainer.train()
    assert trainer.accelerator.native_amp == (precision == "bf16" or device == "cuda")
    assert "_original_forward" not in vars(trainer.model)
    install_fake_hub(monkeypatch, tmp_path / "remote")
    trainer.push_to_hub(token=TOKEN)  # save_release's gate: reload in a fresh process, compare outputs
    assert json.loads((tmp_path / "remote" / "config.json").read_text())["hidden_act"] == "relu"


@pytest.mark.slow
def test_bf16_push_of_a_model_not_trained_here_passes_the_gate(tmp_path, monkeypatch):
    """push_to_hub's own evaluation (the swap report) installs the autocast wrapper on an untrained trainer."""
    model = convert_to_lambda_gelu(tiny_bert(), LambdaGELUConfig(lambda_init=1000.0))  # hard: c/λ < ε
    trainer = _trainer(tmp_path / "out", model=model, bf16=True, distill_alpha=0.0, hub_model_id="me/tiny-relu")
    install_fake_hub(monkeypatch, tmp_path / "remote")
    trainer.push_to_hub(token=TOKEN)
    assert json.loads((tmp_path / "remote" / "config.json").read_text())["hidden_act"] == "relu"


# -- 11: a non-finite loss stops training -----------------------------------------------------------------------------
def _regression_data(n: int = 32, nan_at: int | None = None) -> Dataset:
    data = text_dataset(n=n)
    labels = [float(v) for v in data["labels"]]
    if nan_at is not None:
        labels[nan_at] = math.nan
    return data.remove_columns("labels").add_column("labels", labels)


def test_a_nan_in_the_training_data_stops_at_its_step_and_names_the_rows(tmp_path):
    data = _regression_data(nan_at=5)
    trainer = _trainer(tmp_path / "out", model=tiny_bert(num_labels=1), data=data, max_steps=4)
    with pytest.raises(NonFiniteLossError, match=r"^The training loss is nan at optimizer step [12] of 4; ") as err:
        trainer.train()
    assert len(err.value.bad_inputs) == 1
    assert err.value.bad_inputs[0].startswith("labels, rows [") and "training data" in str(err.value)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # stopped before the optimizer step
    assert not (tmp_path / "out" / "reluization_report.json").exists()  # no metrics of a NaN model


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tmp_path):
    trainer = _trainer(tmp_path / "out", model=tiny_bert(num_labels=1), data=_regression_data(), learning_rate=1e38)
    with pytest.raises(NonFiniteLossError, match="inputs are finite, so the model diverged") as err:
        trainer.train()
    assert err.value.bad_inputs == [] and 1 < err.value.step <= 8


def test_the_reluization_report_records_the_runs_tolerance(tmp_path):
    """Issue 25 item 20: a hardened run wrote ``"tolerance": null`` while its card says ε = 0.001."""
    out = tmp_path / "out"
    trainer = _trainer(out, max_steps=4, relu_tolerance=2e-3)
    trainer.train()
    report = json.loads((out / "reluization_report.json").read_text())
    assert report["tolerance"] == 2e-3 and trainer.reluization_report.tolerance == 2e-3
    assert report["max_error_bound"] == pytest.approx(2e-3, rel=1e-3)  # hardened to λ* = c/ε

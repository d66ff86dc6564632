"""λ-GELU → ReLU swap and the hardness profile (hf_lambda_gelu/reluize.py)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_MODELS
from torch import nn

from hf_lambda_gelu import (
    RELU_DISTANCE_CONSTANT,
    LambdaGELU,
    LambdaGELUConfig,
    NotLambdaGELUModelError,
    ReluizeReport,
    UnhardenedSwapWarning,
    convert_to_lambda_gelu,
    hardness_profile,
    lambda_gelu,
    reluize,
)

LAYER_LAMBDAS = (200.0, 400.0, 800.0)  # BERT MLM: layer 0, layer 1, MLM head (depth order)


def hardened_bert(lambdas=LAYER_LAMBDAS):
    case = TINY_MODELS["bert_mlm"]
    model = convert_to_lambda_gelu(case.build(), LambdaGELUConfig(lambda_temperature=0.5))
    for m, lam in zip([m for m in model.modules() if isinstance(m, LambdaGELU)], lambdas, strict=True):
        m.set_lambda(lam)
    return model


@pytest.mark.parametrize("lam", [1.0, 3.0, 10.0, 170.0, 1e3])
def test_distance_to_relu_is_c_over_lambda(lam):
    x = torch.linspace(-8.0 / lam, 8.0 / lam, 400_001, dtype=torch.float64)
    gap = (lambda_gelu(x, lam) - F.relu(x)).abs()
    assert gap.max().item() == pytest.approx(RELU_DISTANCE_CONSTANT / lam, rel=1e-7)
    assert abs(x[gap.argmax()].item()) * lam == pytest.approx(0.752, abs=2e-3)
    # and the L1 distance from docs/method.md §2, 1/(2λ²), on the same grid
    assert torch.trapezoid(gap, x).item() == pytest.approx(1.0 / (2 * lam**2), rel=1e-4)


def test_reluize_bert_swaps_everything_and_updates_the_config():
    case = TINY_MODELS["bert_mlm"]
    model = hardened_bert()
    inputs = case.inputs()
    with torch.no_grad():
        before = case.output(model, inputs)

    report = reluize(model)
    assert report.swapped == list(case.act_names)
    assert not any(isinstance(m, LambdaGELU) for m in model.modules())
    for name in case.act_names:
        assert type(model.get_submodule(name)) is nn.ReLU
    for name, lam in zip(case.act_names, LAYER_LAMBDAS, strict=True):
        assert report.lambdas[name] == pytest.approx(lam, rel=1e-5)
        assert report.error_bounds[name] == pytest.approx(RELU_DISTANCE_CONSTANT / lam, rel=1e-5)
    assert report.max_error_bound == pytest.approx(RELU_DISTANCE_CONSTANT / min(LAYER_LAMBDAS), rel=1e-5)
    assert report.to_dict()["max_error_bound"] == report.max_error_bound
    assert model.config.hidden_act == "relu"
    assert not hasattr(model.config, "lambda_gelu") and "lambda_gelu" not in model.config.to_dict()

    # The result is exactly a stock ReLU BERT with the same weights ...
    stock = case.build(hidden_act="relu")
    assert not stock.load_state_dict(model.state_dict(), strict=True).missing_keys
    with torch.no_grad():
        after = case.output(model, inputs)
        torch.testing.assert_close(after, case.output(stock, inputs), rtol=0, atol=0)
    # ... and, the gates being hard (λ ≥ 200), close to the λ-GELU model it came from.
    assert (after - before).abs().max() < 0.05
    soft = hardened_bert(lambdas=(1.0, 1.0, 1.0))
    with torch.no_grad():
        soft_before = case.output(soft, inputs)
        with pytest.warns(UnhardenedSwapWarning, match="naive GELU → ReLU swap"):  # λ = 1: flagged
            reluize(soft)
        soft_gap = (case.output(soft, inputs) - soft_before).abs().max()
    assert soft_gap > 5 * (after - before).abs().max(), "hardening must shrink the swap's disruption"


def test_reluize_gpt2_sets_activation_function():
    model = convert_to_lambda_gelu(TINY_MODELS["gpt2"].build())
    report = reluize(model, tolerance=None)  # λ = 1, unchecked: only the config matters here
    assert report.swapped == list(TINY_MODELS["gpt2"].act_names)
    assert model.config.activation_function == "relu"
    assert not hasattr(model.config, "lambda_gelu")


def test_partial_reluize_keeps_the_lambda_config():
    model = hardened_bert()
    report = reluize(model, filter_fn=lambda m, name: name.startswith("bert.encoder.layer.0."))
    assert report.swapped == ["bert.encoder.layer.0.intermediate.intermediate_act_fn"]
    assert sum(isinstance(m, LambdaGELU) for m in model.modules()) == 2
    assert model.config.hidden_act == "lambda_gelu" and model.config.lambda_gelu["lambda_temperature"] == 0.5


def test_reluize_without_lambda_gelu_raises():
    with pytest.raises(NotLambdaGELUModelError, match="BertForMaskedLM has no LambdaGELU") as info:
        reluize(TINY_MODELS["bert_mlm"].build())
    assert isinstance(info.value, ValueError)
    assert "convert_to_lambda_gelu" in str(info.value)
    with pytest.raises(NotLambdaGELUModelError, match="Sequential"):
        reluize(nn.Sequential(nn.Linear(2, 2), nn.GELU()))


@pytest.mark.slow
def test_reluized_checkpoint_loads_in_stock_transformers(tmp_path, run_python):
    case = TINY_MODELS["bert_mlm"]
    model = hardened_bert()
    reluize(model)
    model.save_pretrained(tmp_path / "relu")
    inputs = case.inputs()
    with torch.no_grad():
        expected = case.output(model, inputs)
    torch.save({"inputs": inputs, "logits": expected}, tmp_path / "expected.pt")

    proc = run_python(
        """
        import sys
        import torch
        from transformers import AutoModelForMaskedLM

        path, data = sys.argv[1], torch.load(sys.argv[2])
        model = AutoModelForMaskedLM.from_pretrained(path).eval()
        with torch.no_grad():
            logits = model(**data["inputs"]).logits
        assert "hf_lambda_gelu" not in sys.modules, "the package was imported"
        assert model.config.hidden_act == "relu", model.config.hidden_act
        torch.testing.assert_close(logits, data["logits"], rtol=0, atol=0)
        print("OK", type(model).__name__, type(model.bert.encoder.layer[0].intermediate.intermediate_act_fn).__name__)
        """,
        str(tmp_path / "relu"),
        str(tmp_path / "expected.pt"),
    )
    assert proc.stdout.split() == ["OK", "BertForMaskedLM", "ReLU"]


def test_hardness_profile_is_in_depth_order():
    model = hardened_bert()
    profile = hardness_profile(model)
    assert list(profile) == list(TINY_MODELS["bert_mlm"].act_names)
    assert all(type(v) is float for v in profile.values())
    assert list(profile.values()) == pytest.approx(list(LAYER_LAMBDAS), rel=1e-5)


def test_hardness_profile_per_channel_reports_the_smallest_lambda():
    model = nn.Sequential(nn.Linear(3, 3), LambdaGELU(num_channels=3), nn.Linear(3, 3), LambdaGELU(lambda_init=7.0))
    model[1].set_lambda(torch.tensor([9.0, 2.5, 40.0]))
    profile = hardness_profile(model)
    assert list(profile) == ["1", "3"]
    assert profile["1"] == pytest.approx(2.5, rel=1e-6) and profile["3"] == pytest.approx(7.0, rel=1e-6)
    with pytest.warns(UnhardenedSwapWarning, match=r"c/min λ = 0\.068 exceeds"):  # the smallest λ sets the bound
        report = reluize(copy.deepcopy(model))
    assert report.error_bounds["1"] == pytest.approx(RELU_DISTANCE_CONSTANT / 2.5, rel=1e-6)
    assert hardness_profile(nn.Sequential(nn.ReLU())) == {}


def test_error_bound_holds_on_a_real_layer():
    """The swap changes each activation by at most c/λ, measured on the layer's real pre-activations."""
    lam = 150.0
    act = LambdaGELU(lambda_init=lam)
    pre = torch.randn(4096, 37, dtype=torch.float32) * 3
    gap = (act(pre) - F.relu(pre)).abs().max().item()
    assert gap <= RELU_DISTANCE_CONSTANT / lam * (1 + 1e-4)
    assert gap > 0.5 * RELU_DISTANCE_CONSTANT / lam  # the bound is nearly attained on dense data
    bound = reluize(nn.Sequential(act), tolerance=None).max_error_bound
    assert math.isclose(bound, RELU_DISTANCE_CONSTANT / lam, rel_tol=1e-5)


def test_swap_report_round_trips_through_json_and_flattens_to_the_logged_metrics():
    naive = ReluizeReport(
        after_swap={"eval_loss": 1.1},
        max_abs_logit_diff=1.3,
        mean_abs_logit_diff=0.2,
        prediction_agreement=0.8,
    )
    report = ReluizeReport(
        swapped=["act"],
        lambdas={"act": 170.0},
        error_bounds={"act": 0.001},
        before_swap={"eval_loss": 0.3},
        after_swap={"eval_loss": 0.31},
        max_abs_logit_diff=0.002,
        mean_abs_logit_diff=1e-4,
        prediction_agreement=0.995,
        settings={"lambda_init": 1.0},
        naive_swap=naive,
    )
    values = json.loads(json.dumps(report.to_dict()))
    assert values["max_error_bound"] == 0.001
    assert values["naive_swap"] == {
        "after_swap": {"eval_loss": 1.1},
        "max_abs_logit_diff": 1.3,
        "mean_abs_logit_diff": 0.2,
        "prediction_agreement": 0.8,
    }
    assert "target_lambda" not in values and "naive_swap_unavailable" not in values  # not measured: not written
    assert ReluizeReport.from_dict(values) == report
    assert report.metrics() == {
        "reluize_max_error_bound": 0.001,
        "reluize_max_abs_logit_diff": 0.002,
        "reluize_mean_abs_logit_diff": 1e-4,
        "reluize_prediction_agreement": 0.995,
        "reluize_before_eval_loss": 0.3,
        "reluize_after_eval_loss": 0.31,
        "naive_swap_max_abs_logit_diff": 1.3,
        "naive_swap_mean_abs_logit_diff": 0.2,
        "naive_swap_prediction_agreement": 0.8,
        "naive_swap_after_eval_loss": 1.1,
    }
    with pytest.raises(TypeError, match="bogus"):
        ReluizeReport.from_dict({"bogus": 1})

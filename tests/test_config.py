"""LambdaGELUConfig: one vocabulary from the training arguments to config.json, and the naive swap."""

import math
import re
import warnings

import pytest
import torch
from conftest import TINY_MODELS

import hf_lambda_gelu
from hf_lambda_gelu import (
    InvalidSettingError,
    LambdaGELUConfig,
    LambdaGELUTrainingArguments,
    convert_to_lambda_gelu,
    gelu_to_relu,
)
from hf_lambda_gelu.errors import UnhardenedSwapWarning
from hf_lambda_gelu.ops import RELU_DISTANCE_CONSTANT


def test_training_arguments_share_the_config_field_names():
    args = LambdaGELUTrainingArguments(
        output_dir="out", lambda_init=2.0, lambda_temperature=0.3, lambda_per_channel=True, report_to="none"
    )
    assert args.lambda_config() == LambdaGELUConfig(lambda_init=2.0, lambda_temperature=0.3, lambda_per_channel=True)
    config_fields = set(LambdaGELUConfig.__dataclass_fields__) - {"num_channels"}
    assert config_fields <= set(LambdaGELUTrainingArguments.__dataclass_fields__)


def test_config_json_stores_the_config_with_per_channel_sizes(tmp_path):
    model = convert_to_lambda_gelu(TINY_MODELS["bert_mlm"].build(), LambdaGELUConfig(lambda_per_channel=True))
    stored = LambdaGELUConfig.from_dict(model.config.lambda_gelu)
    assert stored.lambda_per_channel and set(stored.num_channels.values()) == {37, 32}
    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path)
    assert LambdaGELUConfig.from_dict(reloaded.config.lambda_gelu) == stored


def test_from_dict_names_an_unknown_key():
    with pytest.raises(InvalidSettingError, match=r"lambda_gelu=\['init_lambda'\].*known ones"):
        LambdaGELUConfig.from_dict({"init_lambda": 2.0})


def test_convert_refuses_a_dict_config():
    with pytest.raises(TypeError, match="LambdaGELUConfig"):
        convert_to_lambda_gelu(TINY_MODELS["bert_mlm"].build(), {"lambda_init": 2.0})


@pytest.mark.parametrize("start", ["gelu", "lambda_gelu"])
def test_gelu_to_relu_is_the_naive_swap(start):
    model = TINY_MODELS["bert_mlm"].build()
    lam = 1.0 if start == "gelu" else 3.0
    if start == "lambda_gelu":
        convert_to_lambda_gelu(model, LambdaGELUConfig(lambda_init=lam))
    expected = dict.fromkeys(TINY_MODELS["bert_mlm"].act_names, lam)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report = gelu_to_relu(model)
    assert not any(issubclass(w.category, UnhardenedSwapWarning) for w in record)
    assert model.config.hidden_act == "relu" and not hasattr(model.config, "lambda_gelu")
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == len(expected)
    assert report.unhardened is True
    assert report.lambdas == pytest.approx(expected)
    assert report.max_error_bound == pytest.approx(RELU_DISTANCE_CONSTANT / min(expected.values()), rel=1e-6)


def test_every_exception_is_exported_at_top_level():
    from hf_lambda_gelu import errors

    for name in errors.__all__:
        assert getattr(hf_lambda_gelu, name) is getattr(errors, name), name
        assert name in hf_lambda_gelu.__all__, name


@pytest.mark.parametrize(
    "settings, field",
    [({"lambda_init": math.inf}, "lambda_init"), ({"lambda_init": 1e39}, "lambda_init"),
     ({"lambda_init": math.nan}, "lambda_init"), ({"lambda_init": 1e38, "lambda_temperature": 10.0}, "lambda_init"),
     ({"lambda_temperature": math.nan}, "lambda_temperature")],
)  # fmt: skip
def test_a_lambda_that_overflows_float32_is_refused(settings, field):
    """Issue 18 (10): λ = inf/1e39 used to convert into a NaN model (λ = 1 + softplus(s/τ) overflows float32)."""
    with pytest.raises(InvalidSettingError, match="^" + re.escape(f"{field}={settings[field]!r} is invalid: ")):
        LambdaGELUConfig(**settings)


def test_the_largest_float32_lambda_converts_to_a_finite_model():
    model = convert_to_lambda_gelu(TINY_MODELS["bert_mlm"].build(), LambdaGELUConfig(lambda_init=3e38))
    lambdas = torch.cat([m.lambda_.detach() for _, m in hf_lambda_gelu.activation.lambda_modules(model)])
    assert torch.isfinite(lambdas).all() and lambdas.min() > 1e38

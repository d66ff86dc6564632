"""The activation-field table: nested sub-configs, T5's feed_forward_proj, the GELU flavors, config.json dicts."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPConfig, T5Config, activations
from transformers.models.bloom.modeling_bloom import BloomGelu

from hf_lambda_gelu import LambdaGELU
from hf_lambda_gelu.config_fields import (
    GELU_FLAVORS,
    activation_fields,
    is_lambda_gelu_config,
    says_relu,
    set_activation_fields,
    to_lambda_gelu_value,
    to_relu_value,
)
from hf_lambda_gelu.gelu_kinds import gelu_form


def test_t5_gated_gelu_goes_to_the_tanh_lambda_gelu_and_then_relu():
    config = T5Config(feed_forward_proj="gated-gelu")
    assert config.dense_act_fn == "gelu_new"
    set_activation_fields(config, to_lambda_gelu_value)
    assert (config.feed_forward_proj, config.dense_act_fn) == ("gated-lambda_gelu_tanh", "lambda_gelu_tanh")
    assert T5Config(feed_forward_proj=config.feed_forward_proj).dense_act_fn == "lambda_gelu_tanh"  # reload
    assert set_activation_fields(config, to_lambda_gelu_value) == []  # idempotent
    set_activation_fields(config, to_relu_value)
    assert (config.feed_forward_proj, config.dense_act_fn) == ("gated-relu", "relu") and says_relu(config)


def test_nested_sub_configs_and_config_json_dicts():
    config = CLIPConfig(text_config={"hidden_act": "gelu"}, vision_config={"hidden_act": "quick_gelu"})
    assert set_activation_fields(config, to_lambda_gelu_value) == ["text_config.hidden_act"]
    assert config.vision_config.hidden_act == "quick_gelu"  # not a GELU flavor: left alone
    assert is_lambda_gelu_config(config) and not says_relu(config)
    as_json = config.to_dict()
    set_activation_fields(as_json, to_relu_value)
    assert as_json["text_config"]["hidden_act"] == "relu" and says_relu(as_json)
    assert activation_fields({"hidden_act": "relu", "activation": "gelu"}) == {
        "hidden_act": "relu",
        "activation": "gelu",
    }
    assert not says_relu({"hidden_act": "relu", "activation": "gelu"})  # one field still GELU: not a ReLU model


@pytest.mark.parametrize("value", sorted(GELU_FLAVORS))
def test_every_gelu_flavor_is_reproduced_at_lambda_one(value):
    module = activations.ACT2FN[value]
    form = gelu_form(module)
    assert form == GELU_FLAVORS[value]
    assert to_lambda_gelu_value(value) == ("lambda_gelu" if form == "none" else "lambda_gelu_tanh")
    x = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(LambdaGELU(approximate=form)(x), module(x), atol=2e-6, rtol=0)


def test_bloom_gelu_is_the_tanh_flavor():
    x = torch.linspace(-6, 6, 241)
    assert gelu_form(BloomGelu()) == "tanh"
    torch.testing.assert_close(LambdaGELU(approximate="tanh")(x), BloomGelu()(x), atol=2e-6, rtol=0)
    assert gelu_form(activations.ACT2FN["quick_gelu"]) is None

"""GELU → λ-GELU conversion, save/load round trips and the from_pretrained helpers (conversion.py)."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from helpers import TINY_MODELS, TinyCase
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertForMaskedLM,
    BertModel,
    PreTrainedModel,
)

import hf_lambda_gelu
from hf_lambda_gelu import InvalidSettingError, LambdaGELU, LambdaGELUConfig, NoGELUFoundError, convert_to_lambda_gelu

EXACT = {"rtol": 0.0, "atol": 0.0}


def lambda_modules(model: nn.Module) -> dict[str, LambdaGELU]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LambdaGELU)}


def lambda_form_name(case: TinyCase) -> str:
    return "lambda_gelu" if case.gelu_form == "none" else "lambda_gelu_tanh"


def perturb_lambdas(model: nn.Module, seed: int = 3) -> None:
    """Move every λ away from its initial value, as training would (λ ∈ [1.2, 4])."""
    g = torch.Generator().manual_seed(seed)
    for m in lambda_modules(model).values():
        m.set_lambda(1.2 + 2.8 * torch.rand(m.lambda_raw.shape, generator=g))


def forward(case: TinyCase, model: nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        return case.output(model, inputs)


# --------------------------------------------------------------------------- conversion


def test_converted_models_reproduce_the_originals(tiny_case: TinyCase):
    original = tiny_case.build()
    inputs = tiny_case.inputs()
    expected = forward(tiny_case, original, inputs)
    converted = convert_to_lambda_gelu(copy.deepcopy(original))

    acts = lambda_modules(converted)
    assert tuple(acts) == tiny_case.act_names
    assert {m.approximate for m in acts.values()} == {tiny_case.gelu_form}
    assert len({id(m) for m in acts.values()}) == len(acts)
    assert not any(type(m).__name__ in ("GELUActivation", "NewGELUActivation") for m in converted.modules())
    actual = forward(tiny_case, converted, inputs)
    max_delta = (actual - expected).abs().max().item()
    assert max_delta < 1e-5, f"max |Δlogits| = {max_delta:.3g}"

    config = converted.config
    assert getattr(config, tiny_case.act_config_key) == lambda_form_name(tiny_case)
    assert config.lambda_gelu == {"lambda_init": 1.0, "lambda_temperature": 0.1, "lambda_per_channel": False}
    assert "lambda_gelu" in config.to_dict()

    # gradients of the shared weights match the stock model; every λ gets one
    loss_orig = tiny_case.output(original, inputs).pow(2).mean()
    loss_conv = tiny_case.output(converted, inputs).pow(2).mean()
    loss_orig.backward()
    loss_conv.backward()
    conv_params = dict(converted.named_parameters())
    for name, p in original.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(conv_params[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert all(m.lambda_raw.grad is not None and m.lambda_raw.grad.abs() > 0 for m in acts.values())


def test_gpt2_needs_the_tanh_form():
    """The erf form on a gelu_new model is measurably off; the chosen tanh form is not."""
    case = TINY_MODELS["gpt2"]
    model = case.build()
    inputs = case.inputs()
    with torch.no_grad():
        for block in model.transformer.h:  # make the MLP matter: large pre-activations
            block.mlp.c_fc.weight.mul_(20.0)
    expected = forward(case, model, inputs)
    converted = convert_to_lambda_gelu(copy.deepcopy(model))
    assert (forward(case, converted, inputs) - expected).abs().max() < 1e-4
    for m in lambda_modules(converted).values():
        m.approximate = "none"
    assert (forward(case, converted, inputs) - expected).abs().max() > 1e-4


@pytest.mark.parametrize(
    "options",
    [{}, {"lambda_init": 2.5, "lambda_temperature": 0.3, "lambda_per_channel": True}, {"lambda_init": 1.7}],
    ids=["default", "custom_per_channel", "init_only"],
)
def test_save_load_round_trip_is_bit_exact(tiny_case: TinyCase, options, tmp_path, fill_uninitialized_memory):
    model = convert_to_lambda_gelu(tiny_case.build(), LambdaGELUConfig(**options))
    perturb_lambdas(model)  # so that a reload at the initial λ cannot pass by accident
    inputs = tiny_case.inputs()
    expected = forward(tiny_case, model, inputs)
    model.save_pretrained(tmp_path)

    loaded = type(model).from_pretrained(tmp_path).eval()
    before, after = lambda_modules(model), lambda_modules(loaded)
    assert list(before) == list(after)
    for name, m in before.items():
        n = after[name]
        assert torch.equal(n.lambda_raw, m.lambda_raw), name
        assert n.lambda_raw.shape == m.lambda_raw.shape and n.approximate == m.approximate
        assert n.lambda_temperature == m.lambda_temperature and n.lambda_init == m.lambda_init
        assert torch.equal(n.lambda_, m.lambda_), name
    assert loaded.config.lambda_gelu == model.config.lambda_gelu
    torch.testing.assert_close(forward(tiny_case, loaded, inputs), expected, **EXACT)


def test_per_channel_checkpoint_loads_into_a_base_model(tmp_path):
    model = convert_to_lambda_gelu(TINY_MODELS["bert_mlm"].build(), LambdaGELUConfig(lambda_per_channel=True))
    perturb_lambdas(model)
    model.save_pretrained(tmp_path)
    base = BertModel.from_pretrained(tmp_path)
    head_acts = lambda_modules(model)
    for name, m in lambda_modules(base).items():
        assert m.lambda_raw.shape == (37,)
        assert torch.equal(m.lambda_raw, head_acts[f"bert.{name}"].lambda_raw), name


def test_per_channel_sizes_follow_the_feeding_linear_layer(tiny_case: TinyCase):
    model = convert_to_lambda_gelu(tiny_case.build(), LambdaGELUConfig(lambda_per_channel=True))
    sizes = {name: m.num_channels for name, m in lambda_modules(model).items()}
    expected_inner = 128 if tiny_case.name == "gpt2" else 37
    for name, size in sizes.items():
        assert size == (32 if name.startswith("cls.") else expected_inner), name
    assert model.config.lambda_gelu["num_channels"] == sizes


def test_filter_fn_restricts_the_swap():
    case = TINY_MODELS["bert_mlm"]
    model = case.build()
    inputs = case.inputs()
    expected = forward(case, model, inputs)
    seen = []

    def only_layer0(module: nn.Module, name: str) -> bool:
        seen.append(name)
        return name.startswith("bert.encoder.layer.0.")

    convert_to_lambda_gelu(model, filter_fn=only_layer0)
    assert list(lambda_modules(model)) == ["bert.encoder.layer.0.intermediate.intermediate_act_fn"]
    assert type(model.cls.predictions.transform.transform_act_fn).__name__ == "GELUActivation"
    assert set(case.act_names) <= set(seen)
    torch.testing.assert_close(forward(case, model, inputs), expected, atol=1e-5, rtol=0)

    with pytest.raises(NoGELUFoundError):
        convert_to_lambda_gelu(case.build(), filter_fn=lambda m, n: False)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_plain_sequential_gelu(approximate):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate=approximate), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    expected = model(x)
    convert_to_lambda_gelu(model, LambdaGELUConfig(lambda_init=1.0))
    assert isinstance(model[1], LambdaGELU) and model[1].approximate == approximate
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


def test_model_without_gelu_raises_listing_what_it_found():
    model = TINY_MODELS["bert_mlm"].build(hidden_act="relu")
    with pytest.raises(NoGELUFoundError, match=r"found: \[.*ReLU.*\]") as info:
        convert_to_lambda_gelu(model)
    assert isinstance(info.value, ValueError)
    assert "ReLU" in info.value.found
    assert not lambda_modules(model) and model.config.hidden_act == "relu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lambda_init": 0.5}, "lambda_init=0.5"),
        ({"lambda_temperature": 0}, "lambda_temperature=0"),
        ({"lambda_temperature": -1.0}, "-1.0"),
        ({"lambda_per_channel": "yes"}, "lambda_per_channel='yes'"),
    ],
)
def test_invalid_settings(kwargs, message):
    model = TINY_MODELS["bert_mlm"].build()
    with pytest.raises(InvalidSettingError, match=message):
        convert_to_lambda_gelu(model, LambdaGELUConfig(**kwargs))
    assert not lambda_modules(model), "nothing may be swapped when the settings are rejected"


def test_per_channel_without_a_linear_parent_raises():
    model = nn.Sequential(nn.GELU())
    with pytest.raises(InvalidSettingError, match="lambda_per_channel=True"):
        convert_to_lambda_gelu(model, LambdaGELUConfig(lambda_per_channel=True))


# --------------------------------------------------------------------------- loading GELU checkpoints


def _save_plain(tmp_path, **config_extra) -> tuple[BertForMaskedLM, str]:
    model = TINY_MODELS["bert_mlm"].build()
    path = str(tmp_path / "plain")
    model.save_pretrained(path)
    if config_extra:
        cfg_file = os.path.join(path, "config.json")
        with open(cfg_file) as f:
            cfg = json.load(f)
        cfg.update(config_extra)
        with open(cfg_file, "w") as f:
            json.dump(cfg, f)
    return model, path


def test_loading_gelu_checkpoint_as_lambda_gelu_initializes_lambda(tmp_path, fill_uninitialized_memory):
    """The PLATFORM.md trap: missing λ params would be uninitialized memory (NaN under this fixture)."""
    plain, path = _save_plain(tmp_path)
    inputs = TINY_MODELS["bert_mlm"].inputs()
    expected = forward(TINY_MODELS["bert_mlm"], plain, inputs)
    initial = LambdaGELU().lambda_
    for _ in range(3):
        model = BertForMaskedLM.from_pretrained(path, hidden_act="lambda_gelu").eval()
        acts = lambda_modules(model)
        assert tuple(acts) == TINY_MODELS["bert_mlm"].act_names
        for name, m in acts.items():
            assert torch.equal(m.lambda_, initial), f"{name}: λ={m.lambda_.tolist()}"
        torch.testing.assert_close(forward(TINY_MODELS["bert_mlm"], model, inputs), expected, atol=1e-5, rtol=0)


def test_config_lambda_settings_are_honoured_on_load(tmp_path, fill_uninitialized_memory):
    _, path = _save_plain(
        tmp_path, hidden_act="lambda_gelu", lambda_gelu={"lambda_init": 3.0, "lambda_temperature": 0.5}
    )
    for _ in range(2):
        model = AutoModelForMaskedLM.from_pretrained(path)
        acts = lambda_modules(model)
        assert len(acts) == 3
        for m in acts.values():
            assert m.lambda_temperature == 0.5
            assert m.lambda_.item() == pytest.approx(3.0, rel=1e-6)


def test_from_pretrained_helper_converts(tmp_path):
    plain, path = _save_plain(tmp_path)
    case = TINY_MODELS["bert_mlm"]
    inputs = case.inputs()
    model = hf_lambda_gelu.from_pretrained(AutoModelForMaskedLM, path)
    assert isinstance(model, BertForMaskedLM)
    assert tuple(lambda_modules(model)) == case.act_names
    assert model.config.hidden_act == "lambda_gelu"
    torch.testing.assert_close(forward(case, model.eval(), inputs), forward(case, plain, inputs), atol=1e-5, rtol=0)

    model = hf_lambda_gelu.from_pretrained(AutoModelForMaskedLM, path, lambda_config=LambdaGELUConfig(lambda_init=2.0))
    assert all(m.lambda_.item() == pytest.approx(2.0, rel=1e-6) for m in lambda_modules(model).values())
    with pytest.raises(TypeError, match="LambdaGELUConfig"):
        hf_lambda_gelu.from_pretrained(AutoModelForMaskedLM, path, lambda_config={"lambda_init": 2.0})


def test_patch_from_pretrained_is_scoped(tmp_path):
    _, path = _save_plain(tmp_path)
    original = PreTrainedModel.__dict__["from_pretrained"]
    with hf_lambda_gelu.patch_from_pretrained(LambdaGELUConfig(lambda_init=1.5)):
        model = AutoModel.from_pretrained(path)
        assert isinstance(model, BertModel)
        acts = lambda_modules(model)
        assert list(acts) == [f"encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)]
        assert all(m.lambda_.item() == pytest.approx(1.5, rel=1e-6) for m in acts.values())
    assert PreTrainedModel.__dict__["from_pretrained"] is original
    plain = AutoModel.from_pretrained(path)
    assert not lambda_modules(plain) and plain.config.hidden_act == "gelu"

    with pytest.raises(RuntimeError, match="boom"), hf_lambda_gelu.patch_from_pretrained():
        raise RuntimeError("boom")
    assert PreTrainedModel.__dict__["from_pretrained"] is original


def test_helpers_keep_lambda_of_a_lambda_checkpoint(tmp_path):
    case = TINY_MODELS["bert_mlm"]
    trained = convert_to_lambda_gelu(case.build(), LambdaGELUConfig(lambda_temperature=0.2))
    perturb_lambdas(trained)
    trained.save_pretrained(tmp_path)
    reference = {n: m.lambda_raw.clone() for n, m in lambda_modules(trained).items()}

    via_helper = hf_lambda_gelu.from_pretrained(
        AutoModelForMaskedLM, tmp_path, lambda_config=LambdaGELUConfig(lambda_init=5.0)
    )
    with hf_lambda_gelu.patch_from_pretrained(LambdaGELUConfig(lambda_init=5.0)):
        via_patch = AutoModelForMaskedLM.from_pretrained(tmp_path)
    for model in (via_helper, via_patch):
        acts = lambda_modules(model)
        assert list(acts) == list(reference)
        for name, m in acts.items():
            assert torch.equal(m.lambda_raw, reference[name]) and m.lambda_temperature == 0.2, name


# --------------------------------------------------------------------------- real checkpoint

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "λ-GELU learns how hard each gate should be.",
    "Transformers use GELU activations in their feed-forward blocks.",
]


def test_real_minilm_checkpoint_is_reproduced(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    original = AutoModel.from_pretrained(minilm_path).eval()
    assert original.config.hidden_act == "gelu" and original.config.num_hidden_layers == 6
    with torch.no_grad():
        expected = original(**batch).last_hidden_state

    converted = convert_to_lambda_gelu(copy.deepcopy(original))
    assert len(lambda_modules(converted)) == 6
    with torch.no_grad():
        actual = converted(**batch).last_hidden_state
    # the default λ is exactly 1 in float32, so the conversion is bitwise the GELU model on any CPU
    assert all(m.lambda_.item() == 1.0 for m in lambda_modules(converted).values())
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert torch.equal(actual, expected)

    via_helper = hf_lambda_gelu.from_pretrained(AutoModel, minilm_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(via_helper(**batch).last_hidden_state, expected, atol=1e-6, rtol=0)

"""ACT2FN registration and config-driven λ-GELU models (hf_lambda_gelu/registration.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_MODELS, TinyCase
from transformers import BertModel, PreTrainedModel
from transformers.activations import ACT2FN

import hf_lambda_gelu
from hf_lambda_gelu import LambdaGELU, register
from hf_lambda_gelu import registration as registration_module


def _lambda_modules(model: torch.nn.Module) -> dict[str, LambdaGELU]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LambdaGELU)}


def _wrap_depth(fn) -> int:
    """How many wrappers defined in registration.py sit around ``fn`` (following ``__wrapped__``)."""
    depth = 0
    while fn is not None:
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename == registration_module.__file__:
            depth += 1
        fn = getattr(fn, "__wrapped__", None)
    return depth


@pytest.mark.parametrize(("name", "form"), [("lambda_gelu", "none"), ("lambda_gelu_tanh", "tanh")])
def test_act2fn_builds_a_new_module_per_lookup(name, form):
    a, b = ACT2FN[name], ACT2FN[name]
    assert isinstance(a, LambdaGELU) and isinstance(b, LambdaGELU)
    assert a is not b and a.lambda_raw is not b.lambda_raw
    assert a.approximate == form and b.approximate == form
    with torch.no_grad():
        a.lambda_raw.add_(1.0)
    assert not torch.equal(a.lambda_raw, b.lambda_raw), "lookups must not share λ storage"


def test_register_is_idempotent(monkeypatch):
    register()
    register()
    hf_lambda_gelu.register()
    assert _wrap_depth(PreTrainedModel.post_init) == 1
    assert _wrap_depth(PreTrainedModel._initialize_weights) == 1
    assert isinstance(ACT2FN["lambda_gelu"], LambdaGELU)

    # behaviourally: building a model applies the config settings exactly once
    calls = []
    original = registration_module.apply_config_settings
    monkeypatch.setattr(
        registration_module, "apply_config_settings", lambda model: (calls.append(model), original(model))[1]
    )
    model = BertModel(TINY_MODELS["bert_mlm"].config(hidden_act="lambda_gelu", lambda_gelu={"lambda_init": 2.0}))
    assert [type(c).__name__ for c in calls] == ["BertModel"], "post_init wrapped more than once"
    assert all(m.lambda_.item() == pytest.approx(2.0, rel=1e-6) for m in _lambda_modules(model).values())


def test_register_restores_entries_removed_from_act2fn():
    saved = {k: ACT2FN[k] for k in ("lambda_gelu", "lambda_gelu_tanh")}
    del ACT2FN["lambda_gelu"]
    try:
        with pytest.raises(KeyError):
            ACT2FN["lambda_gelu"]
        register()
        assert isinstance(ACT2FN["lambda_gelu"], LambdaGELU)
    finally:
        register()
    assert type(ACT2FN["lambda_gelu_tanh"]) is type(saved["lambda_gelu_tanh"])


@pytest.mark.parametrize("case_name", list(TINY_MODELS))
def test_config_builds_one_independent_lambda_gelu_per_layer(case_name):
    case: TinyCase = TINY_MODELS[case_name]
    act_name = "lambda_gelu" if case.gelu_form == "none" else "lambda_gelu_tanh"
    model = case.build(**{case.act_config_key: act_name})
    acts = _lambda_modules(model)
    assert tuple(acts) == case.act_names  # BERT's MLM head transform included
    assert len({id(m.lambda_raw) for m in acts.values()}) == len(acts), "λ parameters must be distinct"
    assert all(m.approximate == case.gelu_form and m.lambda_raw.shape == (1,) for m in acts.values())
    assert all(m.lambda_.item() == LambdaGELU().lambda_.item() for m in acts.values())

    # The λ model is the stock GELU model with extra λ parameters: same weights → same outputs.
    stock = case.build()
    missing, unexpected = model.load_state_dict(stock.state_dict(), strict=False)
    assert sorted(missing) == sorted(f"{n}.lambda_raw" for n in case.act_names) and not unexpected
    inputs = case.inputs()
    with torch.no_grad():
        torch.testing.assert_close(case.output(model, inputs), case.output(stock, inputs), atol=1e-5, rtol=0)

    # Every layer's λ learns on its own.
    case.output(model, inputs).pow(2).mean().backward()
    grads = [m.lambda_raw.grad for m in acts.values()]
    assert all(g is not None and g.abs().item() > 0 for g in grads)
    assert len({g.item() for g in grads}) == len(grads)


def test_config_lambda_settings_are_applied_per_module():
    settings = {
        "lambda_init": 2.0,
        "lambda_temperature": 0.5,
        "num_channels": {"encoder.layer.0.intermediate.intermediate_act_fn": 37},
    }
    model = BertModel(TINY_MODELS["bert_mlm"].config(hidden_act="lambda_gelu", lambda_gelu=settings))
    acts = _lambda_modules(model)
    assert list(acts) == [
        "encoder.layer.0.intermediate.intermediate_act_fn",
        "encoder.layer.1.intermediate.intermediate_act_fn",
    ]
    first, second = acts.values()
    assert first.lambda_raw.shape == (37,) and second.lambda_raw.shape == (1,)
    for m in (first, second):
        assert m.lambda_temperature == 0.5 and m.lambda_init == 2.0
        torch.testing.assert_close(m.lambda_, torch.full_like(m.lambda_, 2.0))
    assert model(torch.randint(0, 99, (2, 5))).last_hidden_state.isfinite().all()


def test_plain_gelu_models_are_untouched_by_the_patches():
    case = TINY_MODELS["bert_mlm"]
    model = case.build()
    assert not _lambda_modules(model)
    assert type(model.bert.encoder.layer[0].intermediate.intermediate_act_fn).__name__ == "GELUActivation"

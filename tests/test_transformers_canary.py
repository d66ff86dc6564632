"""Canary: what hf_lambda_gelu/registration.py relies on in transformers' PreTrainedModel.

``register()`` wraps ``PreTrainedModel.post_init`` (apply the config's λ settings once the modules
exist) and ``PreTrainedModel._initialize_weights`` (set λ that no checkpoint provided), and
``LambdaGELU.reset_parameters`` writes through ``transformers.initialization.copy_`` (which skips
loaded tensors). If a transformers release changes any of these, this file fails first, naming
the method, instead of λ silently coming out as uninitialized memory.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers
from tiny_data import tiny_bert
from transformers import BertForSequenceClassification, GPT2LMHeadModel, PreTrainedModel, ViTForImageClassification
from transformers import initialization as hf_init

from hf_lambda_gelu import LambdaGELU
from hf_lambda_gelu.activation import lambda_modules


def _canary(ok: bool, what: str) -> None:
    if not ok:
        pytest.fail(
            f"transformers {transformers.__version__} changed {what}. hf_lambda_gelu/registration.py relies on it "
            "(see its module docstring): update the wrap, then this test.",
            pytrace=False,
        )


def test_wrapped_methods_keep_the_signatures_the_wrappers_assume():
    post_init = inspect.signature(inspect.unwrap(PreTrainedModel.post_init))
    _canary(list(post_init.parameters) == ["self"], f"PreTrainedModel.post_init's signature (now {post_init})")
    init_weights = inspect.signature(inspect.unwrap(PreTrainedModel._initialize_weights))
    params = list(init_weights.parameters.values())
    _canary(
        [p.name for p in params[:2]] == ["self", "module"]
        and all(p.default is not inspect.Parameter.empty for p in params[2:]),
        f"PreTrainedModel._initialize_weights's signature (now {init_weights}; the wrapper needs (self, module, ...))",
    )
    copy = inspect.signature(hf_init.copy_)
    _canary(list(copy.parameters) == ["tensor", "other"], f"transformers.initialization.copy_ (now {copy})")
    for cls in (BertForSequenceClassification, GPT2LMHeadModel, ViTForImageClassification):
        for name in ("post_init", "_initialize_weights"):
            _canary(
                getattr(cls, name) is getattr(PreTrainedModel, name),
                f"{cls.__name__} overrides PreTrainedModel.{name}, which bypasses the wrap",
            )


def test_initialization_copy_skips_loaded_tensors():
    fresh, loaded = torch.zeros(2), torch.zeros(2)
    loaded._is_hf_initialized = True
    hf_init.copy_(fresh, torch.ones(2))
    hf_init.copy_(loaded, torch.ones(2))
    _canary(fresh.tolist() == [1.0, 1.0], "initialization.copy_: it no longer copies into a fresh tensor")
    _canary(loaded.tolist() == [0.0, 0.0], "initialization.copy_: it overwrites tensors flagged _is_hf_initialized")


def test_post_init_runs_once_per_model_after_its_modules_exist(monkeypatch):
    seen = []
    wrapped = PreTrainedModel.post_init
    monkeypatch.setattr(
        PreTrainedModel,
        "post_init",
        lambda self: (seen.append((type(self).__name__, len(lambda_modules(self)))), wrapped(self))[1],
    )
    tiny_bert(hidden_act="lambda_gelu")
    # BertForSequenceClassification's __init__ builds BertModel (its own post_init) and calls post_init last
    _canary(
        seen == [("BertModel", 2), ("BertForSequenceClassification", 2)],
        f"when post_init runs while a model is built (calls seen: {seen})",
    )


def test_from_pretrained_initializes_missing_lambda_through_initialize_weights(
    tmp_path, monkeypatch, fill_uninitialized_memory
):
    """A GELU checkpoint loaded as λ-GELU: λ is missing, built on meta, and must come from the wrap."""
    tiny_bert().save_pretrained(tmp_path / "gelu")
    saved = tiny_bert(hidden_act="lambda_gelu")
    for _, module in lambda_modules(saved):
        module.set_lambda(3.0)
    saved.save_pretrained(tmp_path / "lambda")

    calls = []
    wrapped = PreTrainedModel._initialize_weights
    monkeypatch.setattr(
        PreTrainedModel,
        "_initialize_weights",
        lambda self, module, *a, **k: (calls.append(module), wrapped(self, module, *a, **k))[1],
    )
    model = BertForSequenceClassification.from_pretrained(tmp_path / "gelu", hidden_act="lambda_gelu")
    acts = [m for _, m in lambda_modules(model)]
    _canary(
        len(acts) == 2 and all(any(c is m for c in calls) for m in acts),
        "from_pretrained: PreTrainedModel._initialize_weights is no longer called for modules with missing weights",
    )
    _canary(
        all(m.lambda_.item() == 1.0 for m in acts),  # the default start: exactly GELU
        f"from_pretrained: λ missing from the checkpoint is not initialized ({[m.lambda_.item() for m in acts]})",
    )
    # λ present in the checkpoint is loaded, not re-initialized by the wrap
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "lambda")
    lams = [m.lambda_.item() for _, m in lambda_modules(reloaded)]
    _canary(lams == pytest.approx([3.0, 3.0]), f"from_pretrained: loaded λ was overwritten ({lams})")
    assert all(isinstance(m, LambdaGELU) and m.lambda_raw.isfinite().all() for m in acts)

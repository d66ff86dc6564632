"""GELUs that no config field controls: which modules a config rebuilds, and functional GELU calls.

A checkpoint only stays λ-GELU (or ReLU) after ``save_pretrained`` → ``from_pretrained`` where the
model's *config* builds the activation module. Two kinds of GELU escape it:

- **hard-coded modules**: built from a literal (ELECTRA's classification / generator heads call
  ``get_activation("gelu")``, BLOOM's ``BloomGelu``). Swapping them in memory is not safe: a reload
  builds GELU again. :func:`config_controlled` finds the controlled ones by rebuilding the model's class
  from its config, with every activation field pointed at λ-GELU, on the ``meta`` device (no memory,
  no weights): the modules that come back as λ-GELU are the controlled ones. This covers any
  architecture, present or future, whose fields are in :mod:`hf_lambda_gelu.config_fields`.
- **functional calls**: ``nn.functional.gelu`` inside a forward (Whisper's conv stem) or an activation
  built per call (DeBERTa-v2's pooler: ``ACT2FN[config.pooler_hidden_act](x)``). No module holds λ
  there. :func:`functional_gelus` finds them by running one forward under a ``TorchFunctionMode``
  that sees every ``gelu`` call, with global module hooks that tell which registered module was
  running (an activation module the model does not register counts as functional too).

Both kind are *GELU remnants* of a release: left as GELU (the in-memory model and its reload agree),
listed in the report and the card; the result is not called "ReLU" without the explicit allow flag
(:class:`hf_lambda_gelu.errors.GELURemnantsError`). A tanh GELU written out inline in a forward (no
``gelu`` call, no module) is not seen by the probe.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .activation import lambda_modules
from .config_fields import is_lambda_gelu_config, set_activation_fields, to_lambda_gelu_value
from .gelu_kinds import GELU, LAMBDA_GELU, activation_kind

__all__ = ["config_controlled", "find_gelu_remnants", "functional_gelus", "gelu_modules", "hard_coded_gelus"]

logger = logging.getLogger(__name__)

_GELU_FUNCTIONS = {torch.nn.functional.gelu, torch._C._nn.gelu}


def gelu_modules(model: nn.Module) -> dict[str, str]:
    """Qualified name → class name of every GELU module (any flavor λ-GELU reproduces) in ``model``."""
    return {name: type(m).__name__ for name, m in model.named_modules() if activation_kind(m) == GELU}


def config_controlled(model: nn.Module) -> set[str] | None:
    """Names of the activation modules that ``model``'s config builds (λ-GELU after a rebuild with λ fields).

    Returns None when the model cannot be rebuilt from its config (no config, a wrapper such as a
    PEFT model, a class that needs more arguments): then nothing is known and callers fall back to
    the release gate (:mod:`hf_lambda_gelu.release.gate`).

    >>> from transformers import ElectraConfig, ElectraForSequenceClassification
    >>> cfg = ElectraConfig(vocab_size=32, embedding_size=8, hidden_size=8, num_hidden_layers=1,
    ...                     num_attention_heads=1, intermediate_size=8)
    >>> sorted(config_controlled(ElectraForSequenceClassification(cfg)))
    ['electra.encoder.layer.0.intermediate.intermediate_act_fn']
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(type(model), "config_class"):
        return None
    probe_config = copy.deepcopy(config)
    set_activation_fields(probe_config, to_lambda_gelu_value)
    if not is_lambda_gelu_config(probe_config):
        return set()
    try:
        with torch.device("meta"):
            probe = type(model)(probe_config)
    except Exception as err:  # noqa: BLE001 - any failure means "unknown", never a wrong answer
        logger.info("Could not rebuild %s from its config (%s); GELU coverage unknown.", type(model).__name__, err)
        return None
    return {name for name, _ in lambda_modules(probe)}


class _GeluCalls(TorchFunctionMode):
    def __init__(self, on_call) -> None:
        super().__init__()
        self.on_call = on_call

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _GELU_FUNCTIONS:
            self.on_call()
        return func(*args, **(kwargs or {}))


def functional_gelus(model: nn.Module, inputs: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """Run ``model(**inputs)`` (eval mode, no grad) and find GELUs computed outside the model's registered modules.

    Args:
        model: the model (put in eval mode for the forward, then back in its mode).
        inputs: keyword inputs of one forward.

    Returns:
        (the forward's output, registered module name → what was computed there), e.g.
        ``{"encoder": "functional gelu call"}``; ``""`` names the model itself.

    >>> import torch
    >>> class Stem(torch.nn.Module):
    ...     def forward(self, x):
    ...         return torch.nn.functional.gelu(x)
    >>> functional_gelus(Stem(), {"x": torch.ones(2)})[1]
    {'': 'functional gelu call'}
    """
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[nn.Module] = []
    found: dict[str, str] = {}

    def owner() -> str:
        return next((names[id(m)] for m in reversed(stack) if id(m) in names), "")

    def before(module, args):
        if id(module) not in names and activation_kind(module) in (GELU, LAMBDA_GELU):
            found.setdefault(owner(), f"{type(module).__name__} built during forward")
        stack.append(module)

    def after(module, args, output):
        if stack and stack[-1] is module:
            stack.pop()

    def on_call() -> None:
        top = stack[-1] if stack else None
        if top is not None and activation_kind(top) in (GELU, LAMBDA_GELU):
            return  # the activation module's own kernel (registered, or already recorded above)
        found.setdefault(owner(), "functional gelu call")

    was_training = model.training
    model.eval()
    pre = nn.modules.module.register_module_forward_pre_hook(before)
    post = nn.modules.module.register_module_forward_hook(after)
    try:
        with torch.no_grad(), _GeluCalls(on_call):
            output = model(**inputs)
    finally:
        pre.remove()
        post.remove()
        model.train(was_training)
    return output, found


def hard_coded_gelus(model: nn.Module) -> dict[str, str]:
    """GELU modules that no config field builds (they come back as GELU after any reload): name → kind.

    >>> from transformers import ElectraConfig, ElectraForSequenceClassification
    >>> cfg = ElectraConfig(vocab_size=32, embedding_size=8, hidden_size=8, num_hidden_layers=1,
    ...                     num_attention_heads=1, intermediate_size=8)
    >>> hard_coded_gelus(ElectraForSequenceClassification(cfg))
    {'classifier.activation': 'GELUActivation (hard-coded module)'}
    """
    controlled = config_controlled(model) or set()
    return {name: f"{cls} (hard-coded module)" for name, cls in gelu_modules(model).items() if name not in controlled}


def find_gelu_remnants(model: nn.Module, inputs: dict[str, Any]) -> dict[str, str]:
    """Every GELU no config field controls: hard-coded modules and functional calls (one forward on ``inputs``).

    Args:
        model: a GELU, λ-GELU or ReLU model.
        inputs: keyword inputs of one forward (e.g. :func:`hf_lambda_gelu.release.gate.dummy_inputs`).

    Returns:
        Registered module name → what stays GELU there (empty: the config controls every GELU).
    """
    return {**hard_coded_gelus(model), **functional_gelus(model, inputs)[1]}

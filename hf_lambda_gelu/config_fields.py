"""The one table of config fields that name a model's activation, and of the GELU flavors they take.

transformers builds activation modules from config strings (``ACT2FN[config.hidden_act]``), but the
field's name differs by architecture family, and composite models keep it in nested sub-configs.
Every place that reads or rewrites "the activation of a config" (conversion, ReLU-ization, the
release checks, the CLI, the card) goes through :func:`activation_fields` /
:func:`set_activation_fields`, so a family added to :data:`ACTIVATION_FIELDS` is covered everywhere.
Which *modules* are GELUs is :mod:`hf_lambda_gelu.gelu_kinds`.


Decisions behind it: docs/design.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "ACTIVATION_FIELDS",
    "ACTIVATION_NAMES",
    "GATED_FIELD",
    "GELU_FLAVORS",
    "activation_fields",
    "is_lambda_gelu_config",
    "says_relu",
    "set_activation_fields",
    "to_lambda_gelu_value",
    "to_relu_value",
]

#: λ-GELU form → the activation name registered in transformers' ``ACT2FN`` (:func:`hf_lambda_gelu.register`).
ACTIVATION_NAMES = {"none": "lambda_gelu", "tanh": "lambda_gelu_tanh"}
#: Config field → the architecture families (transformers 5.x) whose activation modules it builds.
ACTIVATION_FIELDS: dict[str, str] = {
    "hidden_act": "BERT, RoBERTa, ALBERT, ELECTRA, DeBERTa-v2, ViT, DeiT, BEiT, Swin, ConvNeXt, SigLIP/CLIP "
    "towers, wav2vec2 encoder, GPT-NeoX, Phi, Gemma (and most encoders)",
    "activation_function": "GPT-2, GPT-Neo, GPT-J, CodeGen, BART, Whisper",
    "hidden_activation": "Gemma (overrides hidden_act when set)",
    "activation": "DistilBERT, Falcon",
    "feat_extract_activation": "wav2vec2-family convolutional feature encoder",
    "dense_act_fn": "T5 / mT5 / UMT5 feed-forward (derived from feed_forward_proj)",
}
#: T5-style composite field: ``"gated-<act>"`` or ``"<act>"``; it sets ``dense_act_fn`` when the config is built.
GATED_FIELD = "feed_forward_proj"
_GATED_PREFIX = "gated-"
#: T5Config turns ``feed_forward_proj="gated-gelu"`` into ``dense_act_fn="gelu_new"`` (the tanh GELU).
_GATED_ALIASES = {"gated-gelu": "gelu_new"}

#: GELU config values → the λ-GELU form that reproduces them at λ = 1 (``"none"``: erf, ``"tanh"``).
GELU_FLAVORS: dict[str, str] = {
    "gelu": "none",
    "gelu_python": "none",
    "gelu_new": "tanh",
    "gelu_fast": "tanh",
    "gelu_accurate": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_python_tanh": "tanh",
}
_LAMBDA_VALUES = frozenset(ACTIVATION_NAMES.values())


def to_lambda_gelu_value(value: str) -> str | None:
    """The λ-GELU activation name for a GELU config value (None when it is not a GELU flavor).

    >>> to_lambda_gelu_value("gelu_python_tanh"), to_lambda_gelu_value("quick_gelu")
    ('lambda_gelu_tanh', None)
    """
    if value in _LAMBDA_VALUES:
        return value
    form = GELU_FLAVORS.get(value)
    return ACTIVATION_NAMES[form] if form else None


def to_relu_value(value: str) -> str | None:
    """``"relu"`` for a λ-GELU config value, else None (nothing else is turned into ReLU)."""
    return "relu" if value in _LAMBDA_VALUES else None


def _is_config(value: Any) -> bool:
    from transformers import PretrainedConfig

    return isinstance(value, (PretrainedConfig, dict))


def _items(config: Any) -> dict[str, Any]:
    return config if isinstance(config, dict) else vars(config)


def _walk(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path prefix, config) for ``config`` and every nested sub-config, depth first."""
    yield prefix, config
    for key, value in list(_items(config).items()):
        if _is_config(value) and not key.startswith("_"):
            yield from _walk(value, f"{prefix}{key}.")


def _get(config: Any, key: str) -> Any:
    return config.get(key) if isinstance(config, dict) else getattr(config, key, None)


def _set(config: Any, key: str, value: str) -> None:
    if isinstance(config, dict):
        config[key] = value
    else:
        setattr(config, key, value)


def activation_fields(config: Any) -> dict[str, str]:
    """Path → value of every activation field of ``config`` (a config object or a ``config.json`` dict).

    >>> from transformers import CLIPConfig
    >>> fields = activation_fields(CLIPConfig(text_config={"hidden_act": "gelu"}))
    >>> fields["text_config.hidden_act"]
    'gelu'
    """
    if config is None:
        return {}
    found = {}
    for prefix, sub in _walk(config):
        for key in (*ACTIVATION_FIELDS, GATED_FIELD):
            value = _get(sub, key)
            if isinstance(value, str):
                found[prefix + key] = value
    return found


def set_activation_fields(config: Any, target: Callable[[str], str | None]) -> list[str]:
    """Rewrite every activation field: ``target(value)`` gives the new value, or None to keep it.

    Args:
        config: a config object or a ``config.json`` dict (changed in place).
        target: e.g. :func:`to_lambda_gelu_value` or :func:`to_relu_value`.

    Returns:
        The paths changed.

    >>> from transformers import T5Config
    >>> cfg = T5Config(feed_forward_proj="gated-gelu")
    >>> set_activation_fields(cfg, to_lambda_gelu_value)
    ['dense_act_fn', 'feed_forward_proj']
    >>> cfg.feed_forward_proj
    'gated-lambda_gelu_tanh'
    """
    changed = []
    for prefix, sub in _walk(config):
        for key in ACTIVATION_FIELDS:
            value = _get(sub, key)
            new = target(value) if isinstance(value, str) else None
            if new is not None and new != value:
                _set(sub, key, new)
                changed.append(prefix + key)
        value = _get(sub, GATED_FIELD)
        new = target(_act(value)) if isinstance(value, str) else None
        if new is not None:
            new = (_GATED_PREFIX if value.startswith(_GATED_PREFIX) else "") + new
            if new != value:
                _set(sub, GATED_FIELD, new)
                changed.append(prefix + GATED_FIELD)
    return changed


def is_lambda_gelu_config(config: Any) -> bool:
    """Whether any activation field names λ-GELU."""
    return any(_act(value) in _LAMBDA_VALUES for value in activation_fields(config).values())


def _act(value: str) -> str:
    return _GATED_ALIASES.get(value, value.removeprefix(_GATED_PREFIX))


def says_relu(config: Any) -> bool:
    """Whether the config builds ReLU where the GELUs were: some field says relu, none says λ-GELU or GELU.

    >>> from transformers import BertConfig
    >>> says_relu(BertConfig(hidden_act="relu")), says_relu(BertConfig())
    (True, False)
    """
    acts = {_act(value) for value in activation_fields(config).values()}
    return "relu" in acts and not acts & (_LAMBDA_VALUES | set(GELU_FLAVORS))

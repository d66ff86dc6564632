"""GELU → λ-GELU conversion of a loaded model, and the from_pretrained patcher."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

from torch import nn
from transformers import PreTrainedModel, activations

from .activation import DEFAULT_TEMPERATURE, LambdaGELU, check_lambda_settings
from .errors import NoGELUFoundError
from .registration import ACTIVATION_NAMES, CONFIG_KEY
from .walker import FilterFn, swap_modules

__all__ = ["ACTIVATION_CONFIG_KEYS", "convert_to_lambda_gelu", "from_pretrained", "patch_from_pretrained"]

logger = logging.getLogger(__name__)

#: Config fields that name a model's activation (BERT/ViT, GPT-2, Gemma-style).
ACTIVATION_CONFIG_KEYS = ("hidden_act", "activation_function", "hidden_activation")
_GELU_CONFIG_VALUES = {"gelu", "gelu_new", "gelu_fast", "gelu_python", "gelu_pytorch_tanh", "gelu_accurate"}


def _gelu_form(module: nn.Module) -> str | None:
    """'none' or 'tanh' for a GELU flavor λ-GELU reproduces exactly at λ = 1, else None."""
    if isinstance(module, nn.GELU):
        return module.approximate
    if isinstance(module, activations.GELUActivation):
        return "none"
    tanh_types = tuple(
        getattr(activations, n)
        for n in ("NewGELUActivation", "GELUTanh", "PytorchGELUTanh", "FastGELUActivation", "AccurateGELUActivation")
        if hasattr(activations, n)
    )
    return "tanh" if isinstance(module, tanh_types) else None


def _activation_like(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__module__.startswith(("torch.nn.modules.activation", "transformers.activations")) or (
        "act" in cls.__name__.lower() or "gelu" in cls.__name__.lower()
    )


def _infer_channels(model: nn.Module, name: str) -> int:
    parent_name = name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    for child in parent.children():
        if isinstance(child, nn.Linear):
            return child.out_features
        if type(child).__name__ == "Conv1D":  # transformers' GPT-2 projection
            return child.nf
    raise ValueError(
        f"per_channel=True could not find the linear layer feeding {name!r} (no nn.Linear/Conv1D in its "
        "parent module); use per_channel=False for this model or restrict filter_fn."
    )


def _set_config_activation(config: Any, value: str, previous: set[str] | None = None) -> list[str]:
    """Point the config's activation field(s) at ``value``; returns the fields changed."""
    changed = []
    for key in ACTIVATION_CONFIG_KEYS:
        current = getattr(config, key, None)
        if isinstance(current, str) and (previous is None or current in previous):
            setattr(config, key, value)
            changed.append(key)
    return changed


def convert_to_lambda_gelu(
    model: nn.Module,
    *,
    init_lambda: float | None = None,
    temperature: float | None = None,
    per_channel: bool = False,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Replace the model's GELU activations with per-layer :class:`LambdaGELU`, in place.

    The λ-GELU form follows the GELU flavor found (erf → ``"none"``, tanh flavors → ``"tanh"``), so
    with the default initial λ the converted model reproduces the original. The config's activation
    field becomes ``"lambda_gelu"`` / ``"lambda_gelu_tanh"`` and ``config.lambda_gelu`` records the λ
    settings, so ``save_pretrained`` → ``from_pretrained`` (package imported) rebuilds the same model.

    Args:
        model: a transformers model (or any nn.Module; then no config is updated).
        init_lambda: initial λ ≥ 1 (default 1: exact GELU, see :class:`LambdaGELU`).
        temperature: softplus temperature τ > 0 (default 0.1).
        per_channel: one λ per channel instead of one per layer. The channel count is the output
            size of the first linear layer (nn.Linear or GPT-2's Conv1D) in the activation's parent
            module (BERT ``dense``, ViT ``fc1``, GPT-2 ``c_fc``).
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` chooses which activations to swap.

    Returns:
        The same model object.

    Raises:
        NoGELUFoundError: nothing was converted; the message lists the activation types found.
        ValueError: ``init_lambda`` < 1 or ``temperature`` ≤ 0.

    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> model = convert_to_lambda_gelu(BertModel(cfg))
    >>> model.config.hidden_act
    'lambda_gelu'
    """
    check_lambda_settings(init_lambda, temperature)
    init_lambda = 1.0 if init_lambda is None else float(init_lambda)
    temperature = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    forms: set[str] = set()

    def replace(module: nn.Module, name: str) -> nn.Module | None:
        form = _gelu_form(module)
        if form is None:
            return None
        forms.add(form)
        channels = _infer_channels(model, name) if per_channel else None
        new = LambdaGELU(init_lambda, temperature, approximate=form, num_channels=channels)
        param = next(model.parameters(), None)
        return new.to(param.device) if param is not None else new

    swaps = swap_modules(model, replace, filter_fn)
    if not swaps:
        found = sorted({type(m).__name__ for _, m in model.named_modules() if _activation_like(m) and m is not model})
        raise NoGELUFoundError(found)
    config = getattr(model, "config", None)
    if config is not None:
        if len(forms) > 1:
            logger.warning("Model mixes erf and tanh GELU flavors; the config names the erf form.")
        name = ACTIVATION_NAMES["none" if "none" in forms else "tanh"]
        _set_config_activation(config, name, previous=_GELU_CONFIG_VALUES | set(ACTIVATION_NAMES.values()))
        settings = {"init_lambda": init_lambda, "temperature": temperature}
        if per_channel:
            settings["num_channels"] = {s.name: s.new.num_channels for s in swaps}
        setattr(config, CONFIG_KEY, settings)
    logger.info("Converted %d GELU activation(s) to λ-GELU (init λ=%g, τ=%g).", len(swaps), init_lambda, temperature)
    return model


_LAMBDA_CONFIG_KEYS = ("init_lambda", "temperature", "per_channel", "filter_fn")


def _check_lambda_config(lambda_config: dict[str, Any] | None) -> dict[str, Any]:
    lambda_config = dict(lambda_config or {})
    unknown = sorted(set(lambda_config) - set(_LAMBDA_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"Unknown lambda_config keys {unknown}; allowed: {list(_LAMBDA_CONFIG_KEYS)}.")
    check_lambda_settings(lambda_config.get("init_lambda"), lambda_config.get("temperature"))
    return lambda_config


def _ensure_lambda_gelu(model: nn.Module, lambda_config: dict[str, Any]) -> nn.Module:
    if any(isinstance(m, LambdaGELU) for m in model.modules()):
        logger.info("Checkpoint already uses λ-GELU; loaded as is.")
        return model
    return convert_to_lambda_gelu(model, **lambda_config)


def from_pretrained(
    model_cls: Any, name_or_path: str, *, lambda_config: dict[str, Any] | None = None, **kwargs: Any
) -> PreTrainedModel:
    """Load a checkpoint with ``model_cls.from_pretrained`` and convert its GELUs to λ-GELU.

    A checkpoint that already uses λ-GELU is returned as loaded (its λ values intact).

    Args:
        model_cls: any Auto class (``AutoModelForSequenceClassification``...) or model class.
        name_or_path: Hub id or local folder.
        lambda_config: keyword arguments for :func:`convert_to_lambda_gelu` (``init_lambda``,
            ``temperature``, ``per_channel``, ``filter_fn``).
        **kwargs: passed to ``from_pretrained`` unchanged.

    >>> import hf_lambda_gelu
    >>> from transformers import AutoModel
    >>> model = hf_lambda_gelu.from_pretrained(AutoModel, "bert-base-uncased")  # doctest: +SKIP
    """
    lambda_config = _check_lambda_config(lambda_config)
    return _ensure_lambda_gelu(model_cls.from_pretrained(name_or_path, **kwargs), lambda_config)


@contextlib.contextmanager
def patch_from_pretrained(lambda_config: dict[str, Any] | None = None) -> Iterator[None]:
    """Context manager under which every ``*.from_pretrained`` returns a λ-GELU model.

    Patches ``PreTrainedModel.from_pretrained`` (which Auto classes call), converting only the
    outermost load, and restores it on exit.

    >>> import hf_lambda_gelu
    >>> from transformers import AutoModelForSequenceClassification
    >>> with hf_lambda_gelu.patch_from_pretrained({"init_lambda": 1.0}):  # doctest: +SKIP
    ...     model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased")
    """
    lambda_config = _check_lambda_config(lambda_config)
    original = PreTrainedModel.__dict__["from_pretrained"]
    depth = 0

    @functools.wraps(original.__func__)
    def patched(cls, *args, **kwargs):
        nonlocal depth
        depth += 1
        try:
            model = original.__func__(cls, *args, **kwargs)
        finally:
            depth -= 1
        return model if depth else _ensure_lambda_gelu(model, lambda_config)

    PreTrainedModel.from_pretrained = classmethod(patched)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = original

"""GELU → λ-GELU conversion of a loaded model, and the from_pretrained patcher."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from .activation import DEFAULT_TEMPERATURE, LambdaGELU, check_lambda_settings
from .config_fields import gelu_module_form, set_activation_fields, to_lambda_gelu_value
from .errors import NoGELUFoundError, UncontrolledGELUError
from .registration import CONFIG_KEY
from .remnants import config_controlled, gelu_modules
from .walker import FilterFn, swap_modules

__all__ = ["convert_to_lambda_gelu", "from_pretrained", "patch_from_pretrained"]

logger = logging.getLogger(__name__)


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
    with the default initial λ the converted model reproduces the original. Every activation field of
    the config (:mod:`hf_lambda_gelu.config_fields`, nested sub-configs included) becomes
    ``"lambda_gelu"`` / ``"lambda_gelu_tanh"`` and ``config.lambda_gelu`` records the λ settings, so
    ``save_pretrained`` → ``from_pretrained`` (package imported) rebuilds the same model.

    Only GELU modules the config builds are converted (:func:`hf_lambda_gelu.remnants.config_controlled`):
    a hard-coded GELU (ELECTRA's classification head, BLOOM's ``BloomGelu``) would come back as GELU
    after a reload, so it stays GELU, is logged, and a release lists it as a GELU remnant.

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
        UncontrolledGELUError: the model has GELUs, but no config field builds any of them (BLOOM).
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
    controlled = config_controlled(model)

    def replace(module: nn.Module, name: str) -> nn.Module | None:
        form = gelu_module_form(module)
        if form is None or (controlled is not None and name not in controlled):
            return None
        channels = _infer_channels(model, name) if per_channel else None
        new = LambdaGELU(init_lambda, temperature, approximate=form, num_channels=channels)
        param = next(model.parameters(), None)
        return new.to(param.device) if param is not None else new

    swaps = swap_modules(model, replace, filter_fn)
    left = {n: c for n, c in gelu_modules(model).items() if controlled is not None and n not in controlled}
    if not swaps:
        if left:
            raise UncontrolledGELUError(type(model).__name__, left)
        found = sorted({type(m).__name__ for _, m in model.named_modules() if _activation_like(m) and m is not model})
        raise NoGELUFoundError(found)
    if left:
        logger.warning(
            "%d GELU module(s) of %s are hard-coded (no config field builds them) and stay GELU: %s. A ReLU release "
            "of this model lists them as GELU remnants.",
            len(left),
            type(model).__name__,
            ", ".join(f"{n} ({c})" for n, c in left.items()),
        )
    config = getattr(model, "config", None)
    if config is not None:
        set_activation_fields(config, to_lambda_gelu_value)
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

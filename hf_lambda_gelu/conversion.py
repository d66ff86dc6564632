"""GELU → λ-GELU conversion of a loaded model, and the from_pretrained patcher."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Iterator
from typing import Any

from torch import nn
from transformers import PreTrainedModel

from .activation import LambdaGELU, has_lambda_gelu
from .config import CONFIG_KEY, LambdaGELUConfig
from .config_fields import set_activation_fields, to_lambda_gelu_value
from .errors import InvalidSettingError, NoGELUFoundError, UncontrolledGELUError
from .gelu_kinds import activation_kind, gelu_form
from .gelu_remnants import config_controlled, gelu_modules
from .module_swap import FilterFn, swap_modules

__all__ = ["convert_to_lambda_gelu", "from_pretrained", "patch_from_pretrained"]

logger = logging.getLogger(__name__)


def _infer_channels(model: nn.Module, name: str) -> int:
    parent_name = name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    for child in parent.children():
        if isinstance(child, nn.Linear):
            return child.out_features
        if type(child).__name__ == "Conv1D":  # transformers' GPT-2 projection
            return child.nf
    raise InvalidSettingError(
        "lambda_per_channel",
        True,
        f"no linear layer feeds {name!r} (no nn.Linear/Conv1D in its parent module); use lambda_per_channel=False "
        "for this model or restrict filter_fn.",
    )


def convert_to_lambda_gelu(
    model: nn.Module, config: LambdaGELUConfig | None = None, *, filter_fn: FilterFn | None = None
) -> nn.Module:
    """Replace the model's GELU activations with per-layer :class:`LambdaGELU`, in place.

    The λ-GELU form follows the GELU flavor found (erf → ``"none"``, tanh flavors → ``"tanh"``), so
    with the default initial λ the converted model reproduces the original. Every activation field of
    the config (:mod:`hf_lambda_gelu.config_fields`, nested sub-configs included) becomes
    ``"lambda_gelu"`` / ``"lambda_gelu_tanh"`` and ``config.lambda_gelu`` records the λ settings
    (:meth:`LambdaGELUConfig.to_dict`, with the per-channel sizes), so
    ``save_pretrained`` → ``from_pretrained`` (package imported) rebuilds the same model.

    Only GELU modules the config builds are converted (:func:`hf_lambda_gelu.gelu_remnants.config_controlled`):
    a hard-coded GELU (ELECTRA's classification head, BLOOM's ``BloomGelu``) would come back as GELU
    after a reload, so it stays GELU, is logged, and a release lists it as a GELU remnant.

    Args:
        model: a transformers model (or any nn.Module; then no config is updated).
        config: the λ settings (default ``LambdaGELUConfig()``: λ = 1, τ = 0.1, one λ per layer). With
            ``lambda_per_channel`` the channel count is the output size of the first linear layer
            (nn.Linear or GPT-2's Conv1D) in the activation's parent module (BERT ``dense``, ViT
            ``fc1``, GPT-2 ``c_fc``).
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` chooses which activations to swap.

    Returns:
        The same model object.

    Raises:
        NoGELUFoundError: nothing was converted; the message lists the activation types found.
        UncontrolledGELUError: the model has GELUs, but no config field builds any of them (BLOOM).
        TypeError: ``config`` is not a :class:`LambdaGELUConfig` (or None).

    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> model = convert_to_lambda_gelu(BertModel(cfg))
    >>> model.config.hidden_act
    'lambda_gelu'
    """
    config = _check_config(config)
    controlled = config_controlled(model)

    def replace(module: nn.Module, name: str) -> nn.Module | None:
        form = gelu_form(module)
        if form is None or (controlled is not None and name not in controlled):
            return None
        channels = _infer_channels(model, name) if config.lambda_per_channel else None
        new = LambdaGELU(config.lambda_init, config.lambda_temperature, approximate=form, num_channels=channels)
        param = next(model.parameters(), None)
        return new.to(param.device) if param is not None else new

    swaps = swap_modules(model, replace, filter_fn)
    left = {n: c for n, c in gelu_modules(model).items() if controlled is not None and n not in controlled}
    if not swaps:
        if left:
            raise UncontrolledGELUError(type(model).__name__, left)
        found = sorted({type(m).__name__ for m in model.modules() if m is not model and activation_kind(m)})
        raise NoGELUFoundError(found)
    if left:
        logger.warning(
            "%d GELU module(s) of %s are hard-coded (no config field builds them) and stay GELU: %s. A ReLU release "
            "of this model lists them as GELU remnants.",
            len(left),
            type(model).__name__,
            ", ".join(f"{n} ({c})" for n, c in left.items()),
        )
    model_config = getattr(model, "config", None)
    if model_config is not None:
        set_activation_fields(model_config, to_lambda_gelu_value)
        channels = {s.name: s.new.num_channels for s in swaps} if config.lambda_per_channel else None
        setattr(model_config, CONFIG_KEY, dataclasses.replace(config, num_channels=channels).to_dict())
    logger.info(
        "Converted %d GELU activation(s) to λ-GELU (init λ=%g, τ=%g).",
        len(swaps),
        config.lambda_init,
        config.lambda_temperature,
    )
    return model


def _check_config(config: LambdaGELUConfig | None) -> LambdaGELUConfig:
    if config is None:
        return LambdaGELUConfig()
    if not isinstance(config, LambdaGELUConfig):
        raise TypeError(
            f"config={config!r} is not a LambdaGELUConfig; pass hf_lambda_gelu.LambdaGELUConfig(lambda_init=..., "
            "lambda_temperature=..., lambda_per_channel=...) or None for the defaults."
        )
    return config


def _ensure_lambda_gelu(model: nn.Module, config: LambdaGELUConfig, filter_fn: FilterFn | None) -> nn.Module:
    if has_lambda_gelu(model):
        logger.info("Checkpoint already uses λ-GELU; loaded as is.")
        return model
    return convert_to_lambda_gelu(model, config, filter_fn=filter_fn)


def from_pretrained(
    model_cls: Any,
    name_or_path: str,
    *,
    lambda_config: LambdaGELUConfig | None = None,
    filter_fn: FilterFn | None = None,
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a checkpoint with ``model_cls.from_pretrained`` and convert its GELUs to λ-GELU.

    A checkpoint that already uses λ-GELU is returned as loaded (its λ values intact).

    Args:
        model_cls: any Auto class (``AutoModelForSequenceClassification``...) or model class.
        name_or_path: Hub id or local folder.
        lambda_config: the λ settings for :func:`convert_to_lambda_gelu` (default ``LambdaGELUConfig()``).
        filter_fn: which activations to convert (see :func:`convert_to_lambda_gelu`).
        **kwargs: passed to ``from_pretrained`` unchanged.

    >>> import hf_lambda_gelu
    >>> from transformers import AutoModel
    >>> model = hf_lambda_gelu.from_pretrained(AutoModel, "bert-base-uncased")  # doctest: +SKIP
    """
    lambda_config = _check_config(lambda_config)
    return _ensure_lambda_gelu(model_cls.from_pretrained(name_or_path, **kwargs), lambda_config, filter_fn)


@contextlib.contextmanager
def patch_from_pretrained(
    lambda_config: LambdaGELUConfig | None = None, *, filter_fn: FilterFn | None = None
) -> Iterator[None]:
    """Context manager under which every ``*.from_pretrained`` returns a λ-GELU model.

    Patches ``PreTrainedModel.from_pretrained`` (which Auto classes call), converting only the
    outermost load, and restores it on exit.

    Args:
        lambda_config: the λ settings (default ``LambdaGELUConfig()``).
        filter_fn: which activations to convert (see :func:`convert_to_lambda_gelu`).

    >>> import hf_lambda_gelu
    >>> from transformers import AutoModelForSequenceClassification
    >>> with hf_lambda_gelu.patch_from_pretrained(hf_lambda_gelu.LambdaGELUConfig(lambda_init=1.0)):  # doctest: +SKIP
    ...     model = AutoModelForSequenceClassification.from_pretrained("bert-base-uncased")
    """
    lambda_config = _check_config(lambda_config)
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
        return model if depth else _ensure_lambda_gelu(model, lambda_config, filter_fn)

    PreTrainedModel.from_pretrained = classmethod(patched)
    try:
        yield
    finally:
        PreTrainedModel.from_pretrained = original

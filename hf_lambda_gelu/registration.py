"""Registration of λ-GELU in transformers (``ACT2FN``) and config-driven module settings.

transformers builds activations from a string (``ACT2FN[config.hidden_act]``) and cannot pass
per-model settings, and it leaves parameters it does not know as uninitialized memory when they are
missing from a checkpoint (models are built on the meta device). ``register()`` therefore
(idempotently) does three things:

1. ``ACT2FN["lambda_gelu"]`` / ``ACT2FN["lambda_gelu_tanh"]`` build a fresh :class:`LambdaGELU`
   (erf / tanh form) per lookup, hence one independent λ per layer.
2. Wraps ``PreTrainedModel.post_init`` so a model built from a config applies the config's
   ``lambda_gelu`` settings (:class:`~hf_lambda_gelu.config.LambdaGELUConfig`: initial λ, temperature,
   per-channel sizes) to its λ-GELU modules before weights are initialized or loaded.
3. Wraps ``PreTrainedModel._initialize_weights`` so λ-GELU modules whose tensors were not loaded
   are set to their initial λ (never uninitialized memory); loaded tensors are left untouched.
"""

from __future__ import annotations

import functools

from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from .activation import LambdaGELU, lambda_modules
from .config import CONFIG_KEY, LambdaGELUConfig
from .config_fields import ACTIVATION_NAMES

__all__ = ["register"]

_PATCHED = "_hf_lambda_gelu_patched"


def _channels_for(channels: dict[str, int], name: str) -> int | None:
    """Per-channel size recorded for module ``name`` (names may differ by a base-model prefix)."""
    for key, size in channels.items():
        if key == name or key.endswith("." + name) or name.endswith("." + key):
            return int(size)
    return None


def apply_config_settings(model: PreTrainedModel) -> None:
    """Give every λ-GELU module of ``model`` the settings stored in ``model.config.lambda_gelu``."""
    config = LambdaGELUConfig.from_dict(getattr(model.config, CONFIG_KEY, None))
    channels = config.num_channels or {}
    for name, module in lambda_modules(model):
        module.configure(config, num_channels=_channels_for(channels, name))


def _wrap_post_init(original):
    @functools.wraps(original)
    def post_init(self, *args, **kwargs):
        apply_config_settings(self)
        return original(self, *args, **kwargs)

    return post_init


def _wrap_initialize_weights(original):
    @functools.wraps(original)
    def _initialize_weights(self, module, *args, **kwargs):
        if isinstance(module, LambdaGELU):
            if not getattr(module, "_is_hf_initialized", False):
                module.reset_parameters()
                module._is_hf_initialized = True
            return None
        return original(self, module, *args, **kwargs)

    return _initialize_weights


def register() -> None:
    """Register ``lambda_gelu`` and ``lambda_gelu_tanh`` with transformers (idempotent).

    Called on ``import hf_lambda_gelu``; call it again after anything resets ``ACT2FN``.

    >>> import hf_lambda_gelu
    >>> from transformers.activations import ACT2FN
    >>> type(ACT2FN["lambda_gelu"]).__name__
    'LambdaGELU'
    """
    for approximate, name in ACTIVATION_NAMES.items():
        ACT2FN[name] = (LambdaGELU, {"approximate": approximate})
    if not getattr(PreTrainedModel, _PATCHED, False):
        PreTrainedModel.post_init = _wrap_post_init(PreTrainedModel.post_init)
        PreTrainedModel._initialize_weights = _wrap_initialize_weights(PreTrainedModel._initialize_weights)
        setattr(PreTrainedModel, _PATCHED, True)

"""PEFT/LoRA support: keep λ trainable and saved with the adapter (``modules_to_save``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .activation import lambda_modules
from .errors import InvalidSettingError, NotLambdaGELUModelError

__all__ = ["LAMBDA_MODULE_SUFFIXES", "add_lambda_modules_to_save", "lambda_module_suffixes"]

#: Activation module names per architecture (PEFT matches ``modules_to_save`` by name suffix).
LAMBDA_MODULE_SUFFIXES = {
    "bert": ["intermediate_act_fn", "transform_act_fn"],
    "vit": ["mlp.activation_fn"],
    "gpt2": ["mlp.act"],
}


def lambda_module_suffixes(model_or_type: nn.Module | str) -> list[str]:
    """The ``modules_to_save`` entries that cover a model's λ-GELU modules.

    Args:
        model_or_type: a model (its λ-GELU module names are used: works for any architecture) or a
            ``model_type`` string among ``LAMBDA_MODULE_SUFFIXES``.
    """
    if isinstance(model_or_type, str):
        if model_or_type not in LAMBDA_MODULE_SUFFIXES:
            raise InvalidSettingError(
                "model_type",
                model_or_type,
                f"no known λ-GELU module names (known: {sorted(LAMBDA_MODULE_SUFFIXES)}); pass the converted model "
                "instead to read them from it.",
            )
        return list(LAMBDA_MODULE_SUFFIXES[model_or_type])
    names = [name for name, _ in lambda_modules(model_or_type)]
    if not names:
        raise NotLambdaGELUModelError(f"{type(model_or_type).__name__} (given to add_lambda_modules_to_save)")
    suffixes = []
    for name in names:
        suffix = ".".join(part for part in name.split(".")[-2:] if not part.isdigit())
        if suffix not in suffixes:
            suffixes.append(suffix)
    return suffixes


def add_lambda_modules_to_save(lora_config: Any, model_or_type: nn.Module | str) -> Any:
    """Add the λ-GELU modules to ``lora_config.modules_to_save`` (in place; returns the config).

    PEFT freezes every non-adapter parameter; ``modules_to_save`` keeps λ trainable AND stores it in
    the adapter so ``PeftModel.from_pretrained`` restores it. Call it before ``get_peft_model``.

    >>> from peft import LoraConfig
    >>> cfg = add_lambda_modules_to_save(LoraConfig(target_modules=["query", "value"]), "bert")
    >>> sorted(cfg.modules_to_save)
    ['intermediate_act_fn', 'transform_act_fn']
    """
    current = list(lora_config.modules_to_save or [])
    for suffix in lambda_module_suffixes(model_or_type):
        if suffix not in current:
            current.append(suffix)
    lora_config.modules_to_save = current
    return lora_config

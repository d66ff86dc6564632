"""What kind of activation a module is: the package's one answer to "is this a GELU?".

Conversion (which GELUs λ-GELU replaces exactly), the GELU-remnant probe, the ONNX export's refusal of a
model that still has GELU, and the release gate (which modules must come back as the same type after a
reload) all classify modules with :func:`activation_kind`. This file imports torch only, nothing of the
package: the gate's reload worker, a process that must not import ``hf_lambda_gelu``, loads it by path.
"""

from __future__ import annotations

from torch import nn

__all__ = [
    "GELU",
    "GELU_KINDS",
    "GELU_LIKE",
    "GELU_MODULE_FLAVORS",
    "LAMBDA_GELU",
    "OTHER",
    "RELU",
    "activation_kind",
    "gelu_form",
]

#: λ-GELU (:class:`hf_lambda_gelu.LambdaGELU`, recognised by class name: the reload worker has no package).
LAMBDA_GELU = "lambda_gelu"
#: A GELU that λ-GELU reproduces exactly at λ = 1 (:func:`gelu_form` gives its form).
GELU = "gelu"
#: A module named GELU that λ-GELU does not reproduce (``QuickGELUActivation``, a model's own GELU class).
GELU_LIKE = "gelu_like"
#: ``nn.ReLU``.
RELU = "relu"
#: Another activation: torch's and transformers' activation classes, any ``*Activation`` class.
OTHER = "other"
#: The kinds that mean "still GELU in some form": a ReLU model has none of them.
GELU_KINDS = frozenset({LAMBDA_GELU, GELU, GELU_LIKE})

#: GELU module classes of transformers → λ-GELU form (``nn.GELU`` carries its own ``approximate``).
#: BLOOM's ``BloomGelu`` is the tanh GELU written out (``bloom_gelu_forward``).
GELU_MODULE_FLAVORS: dict[str, str] = {
    "GELUActivation": "none",
    "NewGELUActivation": "tanh",
    "GELUTanh": "tanh",
    "PytorchGELUTanh": "tanh",
    "FastGELUActivation": "tanh",
    "AccurateGELUActivation": "tanh",
    "BloomGelu": "tanh",
}
#: Modules whose classes are activations even when their names do not say so (``Tanh``, ``Sigmoid``...).
_ACTIVATION_MODULES = ("torch.nn.modules.activation", "transformers.activations")
_NOT_ACTIVATIONS = frozenset({"MultiheadAttention"})  # defined in torch.nn.modules.activation


def gelu_form(module: nn.Module) -> str | None:
    """``"none"`` or ``"tanh"`` for a GELU module that λ-GELU reproduces exactly at λ = 1, else None.

    Args:
        module: any module.

    >>> gelu_form(nn.GELU(approximate="tanh")), gelu_form(nn.SiLU())
    ('tanh', None)
    """
    if isinstance(module, nn.GELU):
        return module.approximate
    cls = type(module)
    return GELU_MODULE_FLAVORS.get(cls.__name__) if cls.__module__.startswith("transformers.") else None


def activation_kind(module: nn.Module) -> str | None:
    """The kind of activation ``module`` is: one of the constants above, or None for a module that is not one.

    Args:
        module: any module.

    >>> [activation_kind(m) for m in (nn.GELU(), nn.ReLU(), nn.SiLU(), nn.Linear(1, 1))]
    ['gelu', 'relu', 'other', None]
    """
    cls = type(module)
    if any(c.__name__ == "LambdaGELU" for c in cls.__mro__):
        return LAMBDA_GELU
    if gelu_form(module) is not None:
        return GELU
    name = cls.__name__.lower()
    if "gelu" in name:
        return GELU_LIKE
    if name == "relu":
        return RELU
    if "activation" in name or name in ("silu", "tanh"):
        return OTHER
    if cls.__module__ in _ACTIVATION_MODULES and cls.__name__ not in _NOT_ACTIVATIONS:
        return OTHER
    return None

"""λ-GELU for the Hugging Face ecosystem: learnable gate hardness, hardening, ReLU-ization.

Importing the package registers ``"lambda_gelu"`` and ``"lambda_gelu_tanh"`` in transformers'
``ACT2FN`` (see :func:`register`).
"""

from .activation import LambdaGELU
from .conversion import convert_to_lambda_gelu, from_pretrained, patch_from_pretrained
from .errors import NoGELUFoundError, NotLambdaGELUModelError
from .ops import RELU_DISTANCE_CONSTANT, lambda_gelu
from .registration import register
from .reluize import ReluizeReport, hardness_profile, reluize
from .walker import swap_modules

register()

__version__ = "0.1.0"

__all__ = sorted(
    [
        "LambdaGELU",
        "NoGELUFoundError",
        "NotLambdaGELUModelError",
        "RELU_DISTANCE_CONSTANT",
        "ReluizeReport",
        "convert_to_lambda_gelu",
        "from_pretrained",
        "hardness_profile",
        "lambda_gelu",
        "patch_from_pretrained",
        "register",
        "reluize",
        "swap_modules",
    ]
)

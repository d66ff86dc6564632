"""``LambdaGELUConfig``: the λ-GELU conversion settings, under the training arguments' names.

One object carries the settings everywhere: :func:`~hf_lambda_gelu.convert_to_lambda_gelu` and
:func:`~hf_lambda_gelu.from_pretrained` take it, ``model.config.lambda_gelu`` stores its
:meth:`~LambdaGELUConfig.to_dict` in ``config.json`` (with the per-channel sizes the conversion
found), and ``LambdaGELUTrainingArguments.lambda_config()`` returns it. Its field names are the
training arguments' (``lambda_init``, ``lambda_temperature``, ``lambda_per_channel``), so no table
translates between them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .activation import DEFAULT_TEMPERATURE, lambda_range_problem
from .errors import InvalidSettingError

__all__ = ["CONFIG_KEY", "LambdaGELUConfig"]

#: The ``config.json`` key that stores :meth:`LambdaGELUConfig.to_dict` on a λ-GELU model's config.
CONFIG_KEY = "lambda_gelu"


@dataclass
class LambdaGELUConfig:
    """The λ-GELU conversion settings (what ``config.json``'s ``lambda_gelu`` stores).

    Args:
        lambda_init: initial λ ≥ 1 (1 = exact GELU), finite in float32 (with τ: τ·λ too).
        lambda_temperature: softplus temperature τ > 0 of λ = 1 + softplus(s/τ).
        lambda_per_channel: one λ per channel instead of one per layer.
        num_channels: per-channel sizes by module name; filled in by the conversion when
            ``lambda_per_channel`` is on (not meant to be set by hand).

    Raises:
        InvalidSettingError: a value out of range (the message names the field and the fix).

    >>> cfg = LambdaGELUConfig(lambda_init=2.0)
    >>> cfg.to_dict()
    {'lambda_init': 2.0, 'lambda_temperature': 0.1, 'lambda_per_channel': False}
    >>> LambdaGELUConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    lambda_init: float = field(
        default=1.0, metadata={"help": "Initial λ (≥ 1) when a GELU model is converted; 1 = exact GELU."}
    )
    lambda_temperature: float = field(
        default=DEFAULT_TEMPERATURE,
        metadata={"help": "Temperature τ of the reparameterization λ = 1 + softplus(s/τ)."},
    )
    lambda_per_channel: bool = field(
        default=False, metadata={"help": "One λ per channel instead of one per layer (when converting)."}
    )
    num_channels: dict[str, int] | None = field(
        default=None,
        metadata={"help": "Per-channel sizes by module name, recorded by the conversion (not set by hand)."},
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.lambda_temperature, numbers.Real) and self.lambda_temperature > 0.0):
            raise InvalidSettingError("lambda_temperature", self.lambda_temperature, "τ must be > 0 (default 0.1).")
        if not math.isfinite(self.lambda_temperature):
            raise InvalidSettingError("lambda_temperature", self.lambda_temperature, "τ must be finite (default 0.1).")
        if not isinstance(self.lambda_init, numbers.Real):
            raise InvalidSettingError("lambda_init", self.lambda_init, "use a number ≥ 1 (1 = GELU).")
        problem = lambda_range_problem(self.lambda_init, self.lambda_temperature)
        if problem:
            raise InvalidSettingError("lambda_init", self.lambda_init, f"{problem}.")
        if not isinstance(self.lambda_per_channel, bool):
            raise InvalidSettingError("lambda_per_channel", self.lambda_per_channel, "use True or False.")
        self.lambda_init = float(self.lambda_init)
        self.lambda_temperature = float(self.lambda_temperature)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``config.json`` (``num_channels`` only when recorded)."""
        values = asdict(self)
        if values["num_channels"] is None:
            del values["num_channels"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LambdaGELUConfig:
        """Rebuild from :meth:`to_dict` output (``config.lambda_gelu``); None gives the defaults.

        Raises:
            InvalidSettingError: an unknown key (the message lists the known ones) or a bad value.
        """
        values = dict(values or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InvalidSettingError("lambda_gelu", unknown, f"unknown setting(s); the known ones are {known}.")
        return cls(**values)

"""One exception base (hf_lambda_gelu/errors.py): every error is a LambdaGELUError, every warning a LambdaGELUWarning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import hf_lambda_gelu
from hf_lambda_gelu import errors
from hf_lambda_gelu.errors import InvalidInputError, InvalidSettingError, LambdaGELUError, LambdaGELUWarning

PACKAGE = Path(hf_lambda_gelu.__file__).parent


def test_every_exported_error_and_warning_has_the_package_base():
    classes = [getattr(errors, name) for name in errors.__all__]
    for cls in classes:
        base = LambdaGELUWarning if issubclass(cls, Warning) else LambdaGELUError
        assert issubclass(cls, base), cls
    assert all(issubclass(c, ValueError) for c in (InvalidSettingError, InvalidInputError, errors.NoGELUFoundError))
    assert issubclass(errors.PushError, RuntimeError) and issubclass(errors.MissingExtraError, ImportError)


def test_no_bare_value_error_is_raised_in_the_package():
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"raise ValueError\b", line)
    ]
    assert not found, found


def test_former_bare_value_errors_are_specific():
    with pytest.raises(InvalidSettingError, match="approximate='erf'") as err:
        hf_lambda_gelu.lambda_gelu(torch.zeros(2), 1.0, "erf")
    assert err.value.name == "approximate"
    with pytest.raises(InvalidInputError, match="hardness profile is empty"):
        hf_lambda_gelu.save_profile_plot({}, "unused.png")
    with pytest.raises(LambdaGELUError, match="same non-zero number"):
        hf_lambda_gelu.distillation.masked_hidden_mse([], [])

import json
import math
import re

import pytest
from transformers import HfArgumentParser

from hf_lambda_gelu import InvalidSettingError, LambdaGELUTrainingArguments
from hf_lambda_gelu.ops import RELU_DISTANCE_CONSTANT

FIELDS = [
    "lambda_learning_rate", "lambda_temperature", "lambda_init", "hardening_start", "hardening_shape",
    "relu_tolerance", "relu_target_lambda", "reluize_at_end",
]  # fmt: skip


def test_fields_have_help_and_parse_from_cli_and_json(tmp_path):
    fields = LambdaGELUTrainingArguments.__dataclass_fields__
    for name in FIELDS:
        assert fields[name].metadata.get("help"), name
    parser = HfArgumentParser(LambdaGELUTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--lambda_learning_rate", "0.03", "--hardening_shape", "linear",
         "--relu_target_lambda", "250", "--reluize_at_end", "false", "--report_to", "none"]
    )  # fmt: skip
    assert (args.lambda_learning_rate, args.hardening_shape, args.relu_target_lambda) == (0.03, "linear", 250.0)
    assert args.reluize_at_end is False and args.target_lambda == 250.0
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path), "relu_tolerance": 0.01, "report_to": "none"}))
    (args,) = parser.parse_json_file(str(path))
    assert args.target_lambda == pytest.approx(16.997, rel=1e-3)


@pytest.mark.parametrize(
    "field, value",
    [("lambda_learning_rate", -1.0), ("lambda_temperature", -1.0), ("lambda_init", 0.5), ("hardening_start", 1.5),
     ("hardening_shape", "exp"), ("relu_tolerance", 0.0), ("relu_target_lambda", 0.2),
     ("lambda_optimizer_family", "lbfgs")],
)  # fmt: skip
def test_bad_values_name_the_field_and_value(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        LambdaGELUTrainingArguments(output_dir=str(tmp_path), report_to="none", **{field: value})


@pytest.mark.parametrize(
    "field, value",
    [("hardening_end", 0.0), ("hardening_end", 1.5), ("hardening_lr_floor", 0.0), ("hardening_lr_floor", 2.0),
     ("distill_alpha", -1.0), ("distill_logits_alpha", -0.5), ("self_distill_alpha", -1.0),
     ("distill_temperature", 0.0)],
)  # fmt: skip
def test_road_fields_reject_bad_values(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        LambdaGELUTrainingArguments(output_dir=str(tmp_path), report_to="none", **{field: value})


def test_road_fields_have_help_and_parse(tmp_path):
    names = ("hardening_end", "hardening_lr_floor", "distill_alpha", "distill_logits_alpha", "self_distill_alpha",
             "distill_temperature")  # fmt: skip
    fields = LambdaGELUTrainingArguments.__dataclass_fields__
    assert all(fields[name].metadata.get("help") for name in names)
    (args,) = HfArgumentParser(LambdaGELUTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--hardening_start", "0.05", "--hardening_end", "0.25",
         "--hardening_lr_floor", "0.5", "--distill_alpha", "1"]
    )  # fmt: skip
    assert (args.hardening_end, args.hardening_lr_floor, args.distill_alpha) == (0.25, 0.5, 1.0)
    assert args.distillation_enabled
    assert not LambdaGELUTrainingArguments("o", report_to="none", distill_alpha=0.0).distillation_enabled


def test_hardening_end_defaults_to_a_tenth_of_the_run_after_the_start(tmp_path):
    def end(**kw):
        return LambdaGELUTrainingArguments(output_dir=str(tmp_path), report_to="none", **kw).hardening_end

    assert end() == 0.1
    assert end(hardening_start=0.75) == pytest.approx(0.85)
    assert end(hardening_start=0.95) == 1.0 and end(hardening_start=1.0) == 1.0
    with pytest.raises(ValueError, match=r"hardening_end=0.5 .*hardening_start=0.75"):
        end(hardening_start=0.75, hardening_end=0.5)


@pytest.mark.parametrize(
    "settings, field",
    [({"lambda_init": math.inf}, "lambda_init"), ({"lambda_init": 1e39}, "lambda_init"),
     ({"lambda_init": math.nan}, "lambda_init"), ({"lambda_init": 1e38, "lambda_temperature": 10.0}, "lambda_init"),
     ({"relu_target_lambda": 1e39}, "relu_target_lambda"), ({"relu_target_lambda": math.inf}, "relu_target_lambda"),
     ({"relu_target_lambda": math.nan}, "relu_target_lambda"),
     ({"relu_target_lambda": 1e38, "lambda_temperature": 10.0}, "relu_target_lambda"),
     ({"relu_tolerance": 1e-300}, "relu_tolerance"), ({"relu_tolerance": 0.2}, "relu_tolerance"),
     ({"relu_tolerance": math.inf}, "relu_tolerance"), ({"relu_tolerance": math.nan}, "relu_tolerance"),
     ({"lambda_learning_rate": math.inf}, "lambda_learning_rate"),
     ({"lambda_learning_rate": math.nan}, "lambda_learning_rate"), ({"distill_alpha": math.inf}, "distill_alpha"),
     ({"hardness_pressure": math.nan}, "hardness_pressure"), ({"self_distill_alpha": math.inf}, "self_distill_alpha"),
     ({"distill_temperature": math.inf}, "distill_temperature"), ({"hardening_end": math.nan}, "hardening_end"),
     ({"hardening_lr_floor": math.nan}, "hardening_lr_floor"), ({"lambda_temperature": math.inf}, "lambda_temperature")],
)  # fmt: skip
def test_settings_that_cannot_train_are_refused_when_the_arguments_are_built(tmp_path, settings, field):
    """Issue 18 (10): float32 overflow, λ* < 1 or NaN used to train to the end and fail naming no setting."""
    with pytest.raises(InvalidSettingError, match="^" + re.escape(f"{field}={settings[field]!r} is invalid: ")) as err:
        LambdaGELUTrainingArguments(output_dir=str(tmp_path), report_to="none", **settings)
    assert err.value.name == field


def test_the_extremes_that_work_are_accepted(tmp_path):
    def args(**kw):
        return LambdaGELUTrainingArguments(output_dir=str(tmp_path), report_to="none", **kw)

    assert args(relu_tolerance=RELU_DISTANCE_CONSTANT).target_lambda == 1.0  # ε = c: λ* = 1
    assert args(relu_target_lambda=3e38, lambda_init=3e38).target_lambda == 3e38
    assert args(relu_tolerance=1e-38).target_lambda == pytest.approx(RELU_DISTANCE_CONSTANT * 1e38)
    with pytest.raises(InvalidSettingError, match=r"relu_tolerance=0\.2 .*λ\* = c/ε = 0\.85.*use ε in \[.*, 0\.17"):
        args(relu_tolerance=0.2)

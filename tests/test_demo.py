"""The offline demos.

- ``hf-lambda-gelu demo --quick`` (hf_lambda_gelu.demo: the real all-MiniLM-L6-v2 on the VADER lexicon)
  runs the whole story in a fresh process: GELU reference, its naive swap, the λ-GELU road, the
  release folder (ReLU config, tokenizer, card with the table), the printed table = all_results.json.
- ``python recipes/image_classification.py --quick`` (no data/model flags: hf_lambda_gelu.demo_digits)
  does the same on the digits; a rerun (in-process) reuses the cached checkpoint and its baselines.
- The data splits are fixed; the table formats every row.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import offline_env

from hf_lambda_gelu import demo, demo_digits
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.release.folder import check_release_dir

REPO = Path(__file__).resolve().parent.parent
TABLE_ROWS = [label for label, _, _ in demo_digits.ROWS]
TEXT_ROWS = [label for label, _, _ in demo.ROWS]


def _table_values(text: str, rows: list[str] = TABLE_ROWS) -> dict[str, float]:
    """Row label → accuracy, parsed from the printed Markdown table."""
    values = {}
    for label in rows:
        match = re.search(rf"\| {re.escape(label)}\s+\|\s+([0-9.]+) \|", text)
        assert match, f"row {label!r} missing from:\n{text}"
        values[label] = float(match.group(1))
    return values


@pytest.mark.slow
def test_image_recipe_without_arguments_runs_the_demo_and_a_rerun_reuses_the_checkpoint(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(REPO / "recipes" / "image_classification.py"), "--quick", "--output_dir", str(out)]
    proc = subprocess.run(cmd, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "it/s]" in proc.stderr  # the Trainer's progress bars are on

    printed = _table_values(proc.stdout)
    assert all(0.0 <= v <= 1.0 for v in printed.values())
    results = json.loads((out / "all_results.json").read_text())
    assert printed[TABLE_ROWS[0]] == pytest.approx(results["gelu_eval_accuracy"], abs=1e-4)
    assert printed[TABLE_ROWS[3]] == pytest.approx(results["eval_accuracy"], abs=1e-4)
    assert results["eval_samples"] == 360 and results["train_samples"] == 1437
    # the hardened λ-GELU swap barely moves the logits
    assert results["reluize_prediction_agreement"] == 1.0 and results["reluize_max_abs_logit_diff"] < 0.05

    # the release: ReLU model + processor + card (with the table) + profile plot
    assert json.loads((out / "config.json").read_text())["hidden_act"] == "relu"
    card = (out / "README.md").read_text()
    assert TABLE_ROWS[1] in card and "hardness_profile.png" in card
    assert (out / "hardness_profile.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "preprocessor_config.json").is_file()
    # the cached GELU "pretrained checkpoint"
    cached = out / "gelu_pretrained_quick"
    assert json.loads((cached / "config.json").read_text())["hidden_act"] == "gelu"
    stamp = (cached / "model.safetensors").stat().st_mtime_ns

    # rerun in-process: the cached checkpoint is reused (not retrained), its baselines are reproduced
    threads = torch.get_num_threads()
    try:
        demo_digits.run(["--quick", "--output_dir", str(out), "--disable_tqdm", "true"])
    finally:
        torch.set_num_threads(threads)
    assert (cached / "model.safetensors").stat().st_mtime_ns == stamp
    rerun = json.loads((out / "all_results.json").read_text())
    assert rerun["gelu_eval_accuracy"] == results["gelu_eval_accuracy"]
    assert rerun["naive_swap_eval_accuracy"] == results["naive_swap_eval_accuracy"]


@pytest.mark.slow
def test_cli_demo_runs_the_minilm_story_and_prints_what_it_saves(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "hf_lambda_gelu.cli", "demo", "--quick", "--output_dir", str(out)]
    proc = subprocess.run(cmd, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "it/s]" in proc.stderr  # the Trainer's progress bars are on
    assert "unrelated file" not in proc.stdout + proc.stderr  # the trainer's reports are the release's own

    printed = _table_values(proc.stdout, TEXT_ROWS)
    results = json.loads((out / "all_results.json").read_text())
    for (label, key, _), value in zip(demo.ROWS, printed.values()):
        assert value == pytest.approx(results[key], abs=1e-4), label
    assert (results["train_samples"], results["eval_samples"]) == (320, 128)
    assert results["naive_swap_prediction_agreement"] < 1.0  # the naive swap moves predictions ...
    assert results["relufy_steps"] == demo.QUICK_DEFAULTS["max_steps"]  # the label-free twin, at the fine-tune's budget
    assert 0.5 <= results["relufy_prediction_agreement"] <= 1.0 and results["relufy_eval_accuracy"] is not None
    assert results["reluize_prediction_agreement"] == 1.0 and results["reluize_max_abs_logit_diff"] == 0.0  # ours not

    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "relu" and config["id2label"] == {"0": "negative", "1": "positive"}
    assert (out / "tokenizer.json").is_file() and (out / "hardness_profile.png").is_file()
    card = (out / "README.md").read_text()
    assert TEXT_ROWS[1] in card and TEXT_ROWS[2] in card and "sentence-transformers/all-MiniLM-L6-v2" in card
    # issue 25 item 20: the two naive swaps told apart in one place; all_results.json is a release file; the report
    # records the ε the card states
    assert card.count(demo.BASELINES_NOTE) == 1 and "baseline is unavailable for this release" in card
    assert "all_results.json" in check_release_dir(out)
    assert json.loads((out / "reluization_report.json").read_text())["tolerance"] == 1e-3


def test_vader_split_is_fixed_and_labels_both_ways():
    first, second = demo.vader_dataset(), demo.vader_dataset()
    assert first["validation"]["text"] == second["validation"]["text"]
    positives = sum(first["train"]["label"]) + sum(first["validation"]["label"])
    assert positives == 3196 and len(first["train"]) + len(first["validation"]) == 7230
    assert first["train"].features["label"].names == ["negative", "positive"]


def test_digits_split_is_fixed_and_stratified():
    first, second = demo_digits.digits_dataset(), demo_digits.digits_dataset()
    assert (len(first["train"]), len(first["validation"])) == (1437, 360)
    assert first["validation"]["label"] == second["validation"]["label"]
    counts = Counter(first["validation"]["label"])
    assert sorted(counts) == list(range(10)) and max(counts.values()) - min(counts.values()) <= 2
    image = first["train"][0]["image"]
    assert image.size == (8, 8) and image.mode == "L"


def test_table_shows_every_row_and_marks_missing_values():
    assert demo.format_table({}).splitlines()[2].startswith(f"| {TEXT_ROWS[0]} ")
    table = demo.format_table(
        {
            "gelu_eval_accuracy": 0.97,
            "naive_swap_eval_accuracy": 0.9,
            "naive_swap_prediction_agreement": 0.93,
            "naive_swap_mean_abs_logit_diff": 0.4,
            "eval_accuracy": 0.96,
            "reluize_prediction_agreement": 1.0,
            "reluize_mean_abs_logit_diff": 6e-5,
        },
        demo_digits.ROWS,
    )
    lines = table.splitlines()
    assert len(lines) == 2 + len(TABLE_ROWS)
    assert "93.00%" in lines[3] and "0.4" in lines[3] and "100.00%" in lines[5] and "6e-05" in lines[5]
    assert "—" in lines[4]  # reluize_before_eval_accuracy was not given


def test_the_recipe_without_the_demo_extra_says_which_extra_in_one_line(monkeypatch, capsys):
    import test_recipes
    from common import run_recipe

    recipe = test_recipes._load_recipe("image_classification")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if scikit-learn were missing
    with pytest.raises(SystemExit) as exit_info:
        run_recipe(lambda: recipe.main(["--quick", "--output_dir", "unused"]))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: The demo (its handwritten digits data set) needs scikit-learn, which is not installed: "
        "pip install 'hf-lambda-gelu[demo]' (the 'demo' extra)."
    ]


def test_demo_help_mentions_every_row_of_its_table(capsys):
    """Issue 25 item 20: ``demo --help`` did not mention the relufy row."""
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "naive ReLU swap" in text and "relufied ReLU twin" in text and "λ-GELU road" in text

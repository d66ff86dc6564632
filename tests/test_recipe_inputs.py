"""Recipes on bad or borderline input: one-line errors naming the file/line/flag and the fix, no
zero-length runs, sequence lengths capped at the model's positions.

In-process through ``run_recipe`` (the scripts' ``__main__`` entry), plus one real script run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import test_recipes
import torch
from common import RESULTS_FILENAME, run_recipe
from helpers import offline_env
from test_recipes import RECIPES, _load_recipe, _recipe_args
from transformers import GPT2Config, GPT2LMHeadModel

bert_recipe_case = test_recipes.bert_case  # fixtures: tiny checkpoints and data
gpt2_recipe_case = test_recipes.gpt2_case
vit_recipe_case = test_recipes.vit_case
text_recipe = test_recipes.text_recipe  # the text recipe module, run on 1 thread


def _one_line_error(main, args, capsys) -> str:
    """Run ``main(args)`` through the entry point: exit code 1 and exactly one line on stderr, no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_recipe(lambda: main(args))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def _text_args(case: dict, out: Path, train: Path, validation: Path | None = None) -> list[str]:
    args = _recipe_args("text_classification", {"text_classification": case}, out)
    i = args.index("--train_file")
    args[i + 1] = str(train)
    args[args.index("--validation_file") + 1] = str(validation or case["validation"])
    return args


def test_bad_data_files_name_the_file_the_line_and_the_fix(text_recipe, bert_recipe_case, tmp_path, capsys):
    case, out = bert_recipe_case, tmp_path / "o"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("sentence,label\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "the film", "label": "pos"}\n\n{"sentence": "a plot" "label": "neg"}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"sentence": "the film", "label": "pos"}\n')
    cases = [
        (_text_args(case, out, empty), [str(empty), "empty", "header row and at least one example"]),
        (_text_args(case, out, header_only), [str(header_only), "no example rows"]),
        (_text_args(case, out, bad, good), [str(bad), "line 3", "invalid JSON", "one JSON object per line"]),
    ]
    for args, expected in cases:
        line = _one_line_error(text_recipe.main, args, capsys)
        for part in expected:
            assert part in line, (part, line)
    assert not out.exists()


GOOD_JSONL = '{"sentence": "the film was good", "label": "pos"}\n{"sentence": "the plot was bad", "label": "neg"}\n'


MIXED_JSONL = GOOD_JSONL + '{"sentence": "a plot", "label": 1}\n{"sentence": "a film", "label": "neg"}\n'


@pytest.mark.parametrize(
    ("name", "content", "validation", "expected"),
    [
        (  # a quoted cell over two lines before it: lines are counted in the file, not rows
            "empty_label.csv",
            'sentence,label\n"the film, was\ngood",pos\nthe film was bad,\nthe plot was fine,pos\n',
            "csv",
            ["line 4", "the label cell (column 'label') is empty", "Give every example a label"],
        ),
        (
            "empty_text.csv",
            "sentence,label\nthe film was good,pos\n\n,neg\n",
            "csv",
            ["line 4", "the text cell (column 'sentence') is empty", "Give every example its text"],
        ),
        ("int_label.jsonl", MIXED_JSONL, None, ["line 3", "the label 1 is an int among strings (column 'label')"]),
        # with a blank line datasets' json loader fails on the mixed types: the diagnosis finds the cell
        (
            "int_label.jsonl",
            MIXED_JSONL.replace("\n{", "\n\n{", 1),
            "jsonl",
            ["line 4", "the 'label' value 1 is an int where line 1 has a string"],
        ),
    ],
)
def test_bad_cells_name_the_file_the_line_and_the_fix(
    text_recipe, bert_recipe_case, tmp_path, capsys, name, content, validation, expected
):
    train = tmp_path / name
    train.write_text(content)
    args = _text_args(bert_recipe_case, tmp_path / "o", train)
    if validation == "jsonl":
        args[args.index("--validation_file") + 1] = str(tmp_path / "validation.jsonl")
        (tmp_path / "validation.jsonl").write_text(GOOD_JSONL)
    elif validation is None:
        del args[args.index("--validation_file") : args.index("--validation_file") + 2]
    line = _one_line_error(text_recipe.main, args, capsys)
    assert line.startswith(f"error: Data file {str(train)!r}, "), line
    for part in [*expected, '"1"'] if name.endswith(".jsonl") else expected:
        assert part in line, (part, line)
    assert not (tmp_path / "o").exists()


def test_bad_cells_of_a_hub_data_set_name_the_split_and_the_example():
    from data_checks import DataCellError, check_cells
    from datasets import Dataset, DatasetDict

    raw = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
        validation=Dataset.from_dict({"text": ["c", None], "label": [0, 1]}),
    )
    with pytest.raises(DataCellError, match=r"^Data: the validation split of 'x/y', example 2: the text cell"):
        check_cells(
            raw, text_columns=["text"], label_column="label", sources={"validation": "the validation split of 'x/y'"}
        )


def test_label_only_in_validation_is_an_error_listing_it(text_recipe, bert_recipe_case, tmp_path, capsys):
    validation = tmp_path / "validation.csv"
    validation.write_text(bert_recipe_case["validation"].read_text() + "the film was odd,meh\n")
    args = _text_args(bert_recipe_case, tmp_path / "o", bert_recipe_case["train"], validation)
    line = _one_line_error(text_recipe.main, args, capsys)
    assert "['meh']" in line and str(validation) in line and "never trains on" in line
    assert str(bert_recipe_case["train"]) in line


def test_missing_column_names_the_file(text_recipe, bert_recipe_case, tmp_path, capsys):
    args = _recipe_args("text_classification", {"text_classification": bert_recipe_case}, tmp_path / "o")
    line = _one_line_error(text_recipe.main, [*args, "--label_column_name", "y"], capsys)
    assert "'y' (--label_column_name)" in line and str(bert_recipe_case["train"]) in line


def test_empty_image_folder_names_the_folder(vit_recipe_case, tmp_path, capsys):
    recipe = _load_recipe("image_classification")
    empty = tmp_path / "empty_train"
    (empty / "red").mkdir(parents=True)
    args = _recipe_args("image_classification", {"image_classification": vit_recipe_case}, tmp_path / "o")
    args[args.index("--train_dir") + 1] = str(empty)
    line = _one_line_error(recipe.main, args, capsys)
    assert str(empty) in line and "no files" in line and "one subfolder per class" in line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max_steps", "0"], "--max_steps 0 trains nothing"),
        (["--max_steps", "-1", "--num_train_epochs", "0"], "--num_train_epochs 0.0 trains nothing"),
        (["--max_train_samples", "0"], "--max_train_samples 0 leaves no examples"),
        (["--hardening_start", "1.0"], "--hardening_start 1.0: the recipes always end with the ReLU swap"),
    ],
)
def test_zero_length_runs_are_refused(text_recipe, bert_recipe_case, tmp_path, capsys, extra, message):
    args = [*_recipe_args("text_classification", {"text_classification": bert_recipe_case}, tmp_path / "o"), *extra]
    assert message in _one_line_error(text_recipe.main, args, capsys)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_block_size_is_capped_at_the_models_positions(gpt2_recipe_case, tmp_path, caplog):
    """A GPT-2 with 16 positions and a 64-token tokenizer: no --block_size (1024) → blocks of 16."""
    short = tmp_path / "short_gpt2"
    config = GPT2Config.from_pretrained(gpt2_recipe_case["checkpoint"])
    config.n_positions = 16
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(short)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (gpt2_recipe_case["checkpoint"] / name).exists():
            (short / name).write_bytes((gpt2_recipe_case["checkpoint"] / name).read_bytes())
    args = _recipe_args("causal_lm", {"causal_lm": gpt2_recipe_case}, tmp_path / "o")
    i = args.index("--block_size")
    del args[i : i + 2]
    args[args.index("--model_name_or_path") + 1] = str(short)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = _load_recipe("causal_lm").main(args)
    finally:
        torch.set_num_threads(threads)
    assert "--block_size=1024 is longer than the model's position embeddings (16): using 16." in caplog.text
    assert metrics["eval_loss"] > 0 and (tmp_path / "o" / RESULTS_FILENAME).is_file()


@pytest.mark.slow
def test_recipe_script_prints_one_line_and_exits_1(bert_recipe_case, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    args = _text_args(bert_recipe_case, tmp_path / "o", empty)
    cmd = [sys.executable, str(RECIPES / "text_classification.py"), *args]
    proc = subprocess.run(cmd, env=offline_env(tmp_path), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Data file") and str(empty) in last

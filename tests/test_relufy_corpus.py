"""relufy's corpus read lazily (hf_lambda_gelu/relufy_corpus.py): the examples the in-memory reader gives, a file read a
line at a time, packing for causal LMs, ``--max-examples``, the held-out tenth never trained on, one-line errors for
bad lines deep in a file, and the memory benchmark's smoke test."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from helpers import offline_env
from test_cli import assert_one_error_line
from test_relufy_cli import WORDS, _classifier_dir, _tokenizer
from transformers import BertConfig, GPT2Config, GPT2LMHeadModel

from hf_lambda_gelu import relufy_cli
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import DataFileError
from hf_lambda_gelu.release.twin import FIDELITY_FILENAME
from hf_lambda_gelu.relufy_corpus import read_corpus, tokenize_corpus
from hf_lambda_gelu.relufy_data import read_examples, text_rows

CONFIG = BertConfig(num_labels=2, id2label={0: "neg", 1: "pos"})
ROOT = Path(__file__).resolve().parents[1]

# name, content, label column, the examples (texts, label ids) as the in-memory reader read them before the corpus
FILES = [
    ("t.txt", "\ufeff the cat \n\n  \nold ships\r\nrain\rfell\x0cover\u2028hills\n", None,
     ["the cat", "old ships", "rain", "fell", "over", "hills"], None),
    ("d.csv", '\ufefftext,label\n"the cat\nsat",pos\nold ships,neg\r\n"a, b",0\n', "label",
     ["the cat\nsat", "old ships", "a, b"], [1, 0, 0]),
    ("d.tsv", 'label\ttext\npos\tthe cat\nneg\t"quoted\ttab"\n', "label", ["the cat", "quoted\ttab"], [1, 0]),
    ("d.jsonl", '{"text": "the cat", "label": "pos"}\n\n{"text": "old\\u2028ships", "label": 1}\n', "label",
     ["the cat", "old\u2028ships"], [1, 1]),
    ("d.json", json.dumps([{"text": "the cat", "label": "neg"}, {"text": "x y", "label": 0}]), "label",
     ["the cat", "x y"], [0, 0]),
    ("lines.json", '{"text": "one", "label": 1}\n{"text": "two", "label": "neg"}\n', "label", ["one", "two"], [1, 0]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "label_column", "texts", "labels"), FILES, ids=[f[0] for f in FILES])
def test_lazy_reading_gives_the_same_examples(tmp_path, name, content, label_column, texts, labels):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    corpus = read_corpus(path, tmp_path / "cache", label_column=label_column, config=CONFIG)
    assert corpus["text"] == texts == read_examples(path, label_column=label_column).inputs
    assert corpus.column_names == (["text", "labels"] if label_column else ["text"])
    if label_column:
        assert corpus["labels"] == labels
    assert corpus.cache_files and all(Path(f["filename"]).is_relative_to(tmp_path / "cache") for f in corpus.cache_files)  # fmt: skip


def test_the_file_is_read_a_line_at_a_time(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text\n" + "".join(f"line {i}\n" for i in range(2, 60)) + '""\n')  # line 60: an empty cell
    assert [number for number, *_ in itertools.islice(text_rows(path), 3)] == [2, 3, 4]  # nothing past them read
    assert read_corpus(path, tmp_path / "cache", max_examples=58)["text"][-1] == "line 59"
    with pytest.raises(DataFileError, match="line 60: empty 'text' cell"):
        read_corpus(path, tmp_path / "cache")


def _lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(n)]


def test_packing_cuts_the_concatenated_texts_into_blocks(tmp_path):
    texts = _lines(2500)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    corpus = read_corpus(tmp_path / "t.txt", tmp_path / "cache")
    tokenizer = _tokenizer()
    packed = tokenize_corpus(corpus, tokenizer, max_length=16, packing=True)
    assert packed.column_names == ["input_ids", "token_type_ids", "attention_mask"]
    assert {len(ids) for ids in packed["input_ids"]} == {16} and set(itertools.chain(*packed["attention_mask"])) == {1}
    expected, dropped = [], []
    for start in range(0, 2500, 1000):  # run_clm.py's way: each map batch of 1000 texts is packed on its own
        tokens = list(itertools.chain(*tokenizer(texts[start : start + 1000])["input_ids"]))
        whole = len(tokens) // 16 * 16
        expected += [tokens[i : i + 16] for i in range(0, whole, 16)]
        dropped.append(len(tokens) - whole)
    assert packed["input_ids"] == expected  # every token, in order, across block edges
    assert all(0 <= d < 16 for d in dropped) and len(expected) > 2500 * 2 // 16

    one_a_line = tokenize_corpus(corpus, tokenizer, max_length=8)
    assert one_a_line["input_ids"] == tokenizer(texts, truncation=True, max_length=8)["input_ids"]


def _gpt2_dir(root: Path) -> Path:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS) + 5, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=2,
                        eos_token_id=3)  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(root / "gpt2")
    _tokenizer().save_pretrained(root / "gpt2")
    return root / "gpt2"


@pytest.fixture
def seen(monkeypatch):
    """The training and held-out datasets the CLI hands to ``relufy``."""
    datasets: dict = {}
    real = relufy_cli.relufy

    def spy(model, train_dataset, *args, eval_dataset=None, **kwargs):
        datasets.update(train=train_dataset, eval=eval_dataset)
        return real(model, train_dataset, *args, eval_dataset=eval_dataset, **kwargs)

    monkeypatch.setattr(relufy_cli, "relufy", spy)
    return datasets


def _relufy(model: Path, out: Path, data: Path, *flags: str) -> int:
    argv = [
        "relufy",
        str(model),
        str(out),
        "--data",
        str(data),
        "--road",
        "swap",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        *flags,
    ]
    return main(argv)


@pytest.mark.parametrize("packing", [True, False])
def test_a_causal_lm_trains_on_packed_blocks_and_never_on_the_held_out_tenth(tmp_path, seen, packing):
    texts = _lines(200, seed=1)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "out"
    flags = ["--max-length", "16"] + ([] if packing else ["--no-packing"])
    assert _relufy(_gpt2_dir(tmp_path), out, tmp_path / "t.txt", *flags) == 0
    tokenizer = _tokenizer()
    train, held_out = texts[:180], texts[180:]
    if packing:
        tokens = list(itertools.chain(*tokenizer(train)["input_ids"]))
        assert seen["train"]["input_ids"] == [tokens[i : i + 16] for i in range(0, len(tokens) // 16 * 16, 16)]
    else:
        assert seen["train"]["input_ids"] == tokenizer(train, truncation=True, max_length=16)["input_ids"]
    # the held-out tenth: one example a line either way, and none of its tokens in the training data
    assert seen["eval"]["input_ids"] == tokenizer(held_out, truncation=True, max_length=16)["input_ids"]
    report = json.loads((out / FIDELITY_FILENAME).read_text())
    assert report["kind"] == "causal_lm"
    assert report["training"]["train_examples"] == len(seen["train"])


def test_max_examples_caps_the_run_before_the_held_out_tenth(tmp_path, capsys, seen):
    data = tmp_path / "d.csv"
    rows = _lines(400, seed=2)
    rows[300] = ""  # line 302 (after the header): an empty cell, past the cap
    data.write_text("text\n" + "\n".join(f'"{t}"' for t in rows) + "\n")
    model = _classifier_dir(tmp_path)
    assert _relufy(model, tmp_path / "out", data, "--max-examples", "100") == 0
    report = json.loads((tmp_path / "out" / FIDELITY_FILENAME).read_text())
    assert report["examples"] == 10 and report["training"]["train_examples"] == 90
    tokenizer = _tokenizer()
    assert seen["eval"]["input_ids"] == tokenizer(rows[90:100], truncation=True, max_length=128)["input_ids"]
    capsys.readouterr()
    assert _relufy(model, tmp_path / "uncapped", data) == 1
    assert_one_error_line(capsys.readouterr().err, "line 302: empty 'text' cell")


def _jsonl(path: Path, bad_line: int, bad: str) -> Path:
    lines = [json.dumps({"text": t, "label": "pos"}) for t in _lines(3000, seed=3)]
    lines[bad_line - 1] = bad
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "flags", "fragment"),
    [
        (
            '{"text": "the cat", ',
            [],
            "line 2500 is not JSON (Expecting property name enclosed in double quotes: line 1 column 21",
        ),
        ('{"text": ["the", "cat"]}', [], 'line 2500: \'text\' is ["the", "cat"], not a string'),
        ('{"txt": "the cat"}', [], "no column 'text' (it has ['txt'])"),
        ('{"text": "the cat", "label": "meh"}', ["--label-column", "label"], "line 2500: Label 'meh' is not one"),
        ('{"text": "the cat", "label": ""}', ["--label-column", "label"], "line 2500: empty 'label' cell"),
    ],
)
def test_a_bad_line_deep_in_a_file_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, bad, flags, fragment):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    data = _jsonl(tmp_path / "d.jsonl", 2500, bad)
    model = _classifier_dir(tmp_path)
    capsys.readouterr()
    assert _relufy(model, tmp_path / "out", data, *flags) == 1
    assert_one_error_line(capsys.readouterr().err, f"{data}': ", fragment)
    assert not (tmp_path / "out").exists() and not list(tmp.iterdir())  # the corpus's Arrow files are gone too


@pytest.mark.parametrize(
    ("lines", "flags", "fragment"),
    [
        (5, ["--max-length", "64"], "packed into blocks of 64 tokens, its 4 training texts leave no whole block"),
        (
            30,
            ["--max-length", "16", "--label-column", "label", "--task-alpha", "1"],
            "the task loss needs one example a line",
        ),
    ],
)
def test_packing_refusals(tmp_path, capsys, lines, flags, fragment):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in _lines(lines)))
    assert _relufy(_gpt2_dir(tmp_path), tmp_path / "out", data, *flags) == 1
    assert_one_error_line(capsys.readouterr().err, fragment, "--no-packing")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_memory_benchmark_quick(tmp_path):
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "relufy_memory.py"), "--quick", "--out", str(out),
                           "--models", "gpt2_causal_lm"], env=offline_env(tmp_path, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    run = report["models"]["gpt2_causal_lm"]
    assert report["lines"] == 2000 and run["big"]["held_out"] == 200 and run["baseline"]["held_out"] == 20
    assert run["big"]["peak_rss_mib"] > 100 and run["corpus_cost_mib"] == run["big"]["peak_rss_mib"] - run["baseline"]["peak_rss_mib"]  # fmt: skip
    assert "corpus cost MiB" in proc.stdout

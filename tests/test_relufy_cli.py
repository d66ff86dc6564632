"""``hf-lambda-gelu relufy``: data files in, a release folder out (sentence-transformers folders stay one)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    BertTokenizerFast,
    BloomConfig,
    BloomForCausalLM,
)

from hf_lambda_gelu.cli import main
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, check_release_dir
from hf_lambda_gelu.release.twin import FIDELITY_FILENAME

WORDS = "the cat sat on a mat while rain fell over green hills and old ships sailed far into night".split()


def _tokenizer() -> BertTokenizerFast:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tokenizer = BertTokenizerFast(vocab=vocab)
    assert tokenizer("the cat")["input_ids"] != tokenizer("old ships")["input_ids"]  # words are words
    return tokenizer


def _config(**overrides) -> BertConfig:
    kw = dict(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              intermediate_size=64, initializer_range=0.2)  # fmt: skip
    return BertConfig(**{**kw, **overrides})


def _classifier_dir(root: Path, **overrides) -> Path:
    torch.manual_seed(0)
    model = BertForSequenceClassification(_config(num_labels=2, id2label={0: "neg", 1: "pos"}, **overrides))
    model.save_pretrained(root / "model")
    _tokenizer().save_pretrained(root / "model")
    return root / "model"


def _sentence_transformers_dir(root: Path, pooling: dict | None = None) -> Path:
    folder = root / "st"
    torch.manual_seed(0)
    BertModel(_config()).save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    config = pooling or {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return folder


def _texts(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choices(WORDS, k=6)) for _ in range(n)) + "\n")
    return path


def _csv(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = ["text,label"] + [f"{' '.join(rng.choices(WORDS, k=6))},{rng.choice(['neg', 'pos'])}" for _ in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _relufy(*argv: str) -> int:
    return main(["relufy", *argv, "--road", "swap", "--max-steps", "6", "--batch-size", "8", "--learning-rate", "3e-4"])


def test_classifier_release_with_fidelity_report_and_card(tmp_path, capsys):
    model_dir = _classifier_dir(tmp_path)
    data, held_out = _texts(tmp_path / "train.txt", 48), _csv(tmp_path / "eval.csv", 24, seed=1)
    out = tmp_path / "out"
    assert _relufy(str(model_dir), str(out), "--data", str(data), "--eval-data", str(held_out), "--label-column", "label") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "top-1 agreement with the original" in printed and "accuracy" in printed
    report = json.loads((out / FIDELITY_FILENAME).read_text())
    assert report["kind"] == "classifier" and report["examples"] == 24
    assert report["accuracy_original"] is not None and report["training"]["task_alpha"] == 0.0
    assert FIDELITY_FILENAME in check_release_dir(out)  # listed in the manifest: uploaded with the release
    card = (out / "README.md").read_text()
    assert "## Fidelity to the original" in card and "top-1 agreement" in card
    assert "swapped from GELU to ReLU at once" in card and "no labels were used" in card
    assert "λ-GELU ReLU-ization" not in card and str(tmp_path) not in card  # says what was done; no local path
    twin = AutoModelForSequenceClassification.from_pretrained(out)  # stock transformers, no custom code
    assert twin.config.hidden_act == "relu" and twin.config.id2label == {0: "neg", 1: "pos"}


def test_without_eval_data_the_last_tenth_is_held_out(tmp_path, capsys):
    model_dir = _classifier_dir(tmp_path)
    out = tmp_path / "out"
    assert _relufy(str(model_dir), str(out), "--data", str(_texts(tmp_path / "t.txt", 50))) == 0
    report = json.loads((out / FIDELITY_FILENAME).read_text())
    assert report["examples"] == 5 and report["training"]["train_examples"] == 45


def test_sentence_transformers_folder_stays_one(tmp_path):
    import sentence_transformers as st

    folder = _sentence_transformers_dir(tmp_path)
    out = tmp_path / "out"
    assert _relufy(str(folder), str(out), "--data", str(_texts(tmp_path / "t.txt", 40)), "--eval-data",
                   str(_texts(tmp_path / "e.txt", 16, seed=2))) == 0  # fmt: skip
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert name in check_release_dir(out)
    report = json.loads((out / FIDELITY_FILENAME).read_text())
    assert report["kind"] == "embedder" and report["pooling"] == "mean" and report["mean_cosine"] > 0
    twin = st.SentenceTransformer(str(out), device="cpu")
    assert twin.encode(["the cat sat"]).shape == (1, 32)
    assert AutoModel.from_pretrained(out).config.hidden_act == "relu"


@pytest.mark.slow
def test_real_minilm_sentence_transformer_round_trip(tmp_path, minilm_path):
    import sentence_transformers as st

    out = tmp_path / "out"
    texts = _texts(tmp_path / "t.txt", 120)  # a tenth held out: more than the 10 neighbours
    assert main(["relufy", minilm_path, str(out), "--data", str(texts), "--max-steps", "2", "--batch-size", "8"]) == 0
    original = st.SentenceTransformer(minilm_path, device="cpu")
    twin = st.SentenceTransformer(str(out), device="cpu")
    assert [type(m).__name__ for m in twin] == [type(m).__name__ for m in original]  # Transformer, Pooling, Normalize
    a, b = twin.encode(["rain over the hills"]), original.encode(["rain over the hills"])
    assert a.shape == b.shape == (1, 384)
    assert AutoModel.from_pretrained(out).config.hidden_act == "relu"


def _bloom_dir(root: Path) -> Path:
    BloomForCausalLM(BloomConfig(vocab_size=40, hidden_size=16, n_layer=1, n_head=2)).save_pretrained(root / "bloom")
    _tokenizer().save_pretrained(root / "bloom")
    return root / "bloom"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_gelu", "No GELU activation"),
        ("bloom", "BloomGelu"),
        ("empty_data", "holds no examples"),
        ("missing_data", "does not exist"),
        ("empty_cell", "line 3: empty 'text' cell"),
        ("small_eval", "neighbour agreement needs more than 10"),
        ("unknown_pooling", "pooling_mode_lasttoken"),
        ("not_empty_out", "not empty"),
        ("task_without_labels", "--task-alpha=1.0 is invalid"),
        ("unknown_label", "Label 'meh' is not one of the model's labels"),
    ],
)
def test_bad_input_one_line_exit_1_nothing_written(tmp_path, capsys, case, message):
    data = _texts(tmp_path / "t.txt", 30)
    extra: list[str] = []
    out = tmp_path / "out"
    if case == "no_gelu":
        model = _classifier_dir(tmp_path, hidden_act="relu")
    elif case == "bloom":
        model = _bloom_dir(tmp_path)
    elif case in ("small_eval", "unknown_pooling"):
        pooling = {"pooling_mode_lasttoken": True} if case == "unknown_pooling" else None
        model = _sentence_transformers_dir(tmp_path, pooling)
        extra = ["--eval-data", str(_texts(tmp_path / "e.txt", 10))]
    else:
        model = _classifier_dir(tmp_path)
    if case == "empty_data":
        data.write_text("\n\n")
    elif case == "missing_data":
        data = tmp_path / "nope.txt"
    elif case == "empty_cell":
        data = tmp_path / "d.csv"
        data.write_text('text\nthe cat\n""\nold ships\n')
    elif case == "not_empty_out":
        out.mkdir()
        (out / "notes.md").write_text("mine")
    elif case == "task_without_labels":
        extra = ["--task-alpha", "1.0"]
    elif case == "unknown_label":
        held_out = _csv(tmp_path / "e.csv", 6)
        held_out.write_text(held_out.read_text() + "old ships,meh\n")
        extra = ["--eval-data", str(held_out), "--label-column", "label"]
    assert _relufy(str(model), str(out), "--data", str(data), *extra) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if case == "not_empty_out":
        assert sorted(p.name for p in out.iterdir()) == ["notes.md"]
    else:
        assert not out.exists()


def test_image_folder_data(tmp_path):
    from PIL import Image as pil
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
                       patch_size=8, num_labels=2, initializer_range=0.2)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    images = tmp_path / "images"
    for label in ("a", "b"):
        (images / label).mkdir(parents=True)
        for i in range(8):
            pixels = (torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy()
            pil.fromarray(pixels).save(images / label / f"{i}.png")
    out = tmp_path / "out"
    assert _relufy(str(tmp_path / "vit"), str(out), "--data", str(images)) == 0
    assert json.loads((out / FIDELITY_FILENAME).read_text())["kind"] == "classifier"
    assert (out / "preprocessor_config.json").is_file() and (out / MANIFEST_FILENAME).is_file()
    shutil.rmtree(images)

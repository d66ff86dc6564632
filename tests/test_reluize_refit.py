"""``hf-lambda-gelu reluize --calibration-data``: an unhardened λ-GELU model released as a refit ReLU model."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from helpers import wordpiece_tokenizer
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from hf_lambda_gelu.cli import main

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad movie great awful film fine plot dull long".split()]
CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(WORDS))


def _sentence(i: int, n: int = 5) -> str:
    return " ".join(WORDS[5 + (i * 7 + j * 3) % 10] for j in range(1 + i % n))


@pytest.fixture(scope="module")
def lam(tmp_path_factory):
    """A λ-GELU classifier at λ = 1 (never hardened), a calibration text file and an eval CSV."""
    root = tmp_path_factory.mktemp("reluize_refit")
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**CONFIG, num_labels=2, initializer_range=0.2))
    model.save_pretrained(root / "gelu")
    wordpiece_tokenizer(WORDS).save_pretrained(root / "gelu")
    assert main(["convert", str(root / "gelu"), str(root / "lg")]) == 0
    (root / "calib.txt").write_text("\n".join(_sentence(i) for i in range(200)) + "\n")
    with open(root / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(40):
            writer.writerow([_sentence(1000 + i, 7), i % 2])
    return root


def _reluize(lam, out, *extra) -> dict:
    argv = ["reluize", lam / "lg", out, "--eval-file", lam / "eval.csv", *extra]
    assert main([str(a) for a in argv]) == 0
    return json.loads((out / "reluization_report.json").read_text())


def test_calibration_data_refits_and_beats_the_naive_swap(lam, tmp_path, capsys):
    refit = _reluize(lam, tmp_path / "refit", "--calibration-data", lam / "calib.txt", "--calibration-size", "64")
    naive = _reluize(lam, tmp_path / "naive", "--allow-unhardened")
    assert refit["unhardened"] is True  # λ = 1: the bound says so; the refit is what makes it acceptable
    assert refit["refit"]["calibration_examples"] == 64
    names = [layer["name"] for layer in refit["refit"]["layers"]]
    assert names == [f"bert.encoder.layer.{i}.output.dense" for i in (0, 1)]
    assert all(layer["error_after"] < layer["error_before"] for layer in refit["refit"]["layers"])
    assert refit["mean_abs_logit_diff"] < naive["mean_abs_logit_diff"]
    card = ModelCard.load(tmp_path / "refit" / "README.md").text
    assert "**Refit.**" in card and "64 unlabeled calibration inputs" in card and "Naive swap" not in card
    assert "**Naive swap.**" in ModelCard.load(tmp_path / "naive" / "README.md").text
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "refit")  # stock transformers
    assert reloaded.config.hidden_act == "relu"


def test_without_calibration_data_an_unhardened_model_is_still_refused(lam, tmp_path, capsys):
    assert main(["reluize", str(lam / "lg"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "--allow-unhardened" in err and not (tmp_path / "out").exists()


def test_a_singular_calibration_set_is_refused_in_one_line(lam, tmp_path, capsys):
    (tmp_path / "one.txt").write_text("good\n")
    argv = ["reluize", lam / "lg", tmp_path / "out", "--calibration-data", tmp_path / "one.txt", "--refit-ridge", "0"]
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "calibration tokens" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_calibration_images_for_a_text_model_are_refused_in_one_line(lam, tmp_path, capsys):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    argv = ["reluize", lam / "lg", tmp_path / "out", "--calibration-data", tmp_path / "images"]
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "holds an image folder" in err and "Traceback" not in err and not (tmp_path / "out").exists()

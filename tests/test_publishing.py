"""Release folders and Hub upload, with the HfApi boundary patched (no network)."""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from fake_hub import TOKEN, FakeHub, install_fake_hub
from helpers import offline_env, wordpiece_tokenizer
from huggingface_hub import ModelCard
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from hf_lambda_gelu import LambdaGELU, NotLambdaGELUModelError, ReluizeReport, convert_to_lambda_gelu, hardness_profile
from hf_lambda_gelu.errors import NotAReleaseError, NotReluModelError, PushError, ReleaseDirNotEmptyError
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, check_release_dir, reluize_for_release, save_release
from hf_lambda_gelu.release.upload import push_reluized

# make_model's λ = 40, 90 are below λ* = 170 on purpose (distinct, visible bounds): every release here is a naive
# swap, which reluize warns about (asserted in test_release_integrity.py); the warning is not what these tests test.
pytestmark = pytest.mark.filterwarnings("ignore::hf_lambda_gelu.errors.UnhardenedSwapWarning")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"good bad movie great awful film fine plot".split()]
TEXTS = ["good movie", "bad plot awful film", "great"]
REPORT = ReluizeReport(metric_name="accuracy", before_swap={"eval_accuracy": 0.75}, after_swap={"eval_accuracy": 0.75})
BASE_FILES = {"README.md", "config.json", "model.safetensors", MANIFEST_FILENAME}
PROFILE_FILES = {"hardness_profile.png", "hardness_profile.json"}


def make_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    return wordpiece_tokenizer(WORDS)  # vocab=: transformers 5.25 ignores vocab_file= (every word [UNK])


def make_model(lambdas: tuple[float, ...] | None = (40.0, 90.0)) -> BertForSequenceClassification:
    """Tiny BERT classifier; λ-GELU with the given per-layer λ (None: plain GELU)."""
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(WORDS)
    )
    model = BertForSequenceClassification(config).eval()
    if lambdas is not None:
        convert_to_lambda_gelu(model)
        for module, lam in zip([m for m in model.modules() if isinstance(m, LambdaGELU)], lambdas):
            module.set_lambda(lam)
    return model


def logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    return install_fake_hub(monkeypatch, tmp_path / "remote")


def test_save_release_writes_a_complete_relu_release(tmp_path):
    model = make_model()
    tokenizer = make_tokenizer(tmp_path / "tok")
    expected_profile = hardness_profile(model)
    out = save_release(
        model,
        tmp_path / "release",
        processing_class=tokenizer,
        base_model="google-bert/bert-base-uncased",
        report=REPORT,
        card_kwargs={"dataset_names": ["stanfordnlp/sst2"], "license": "mit"},
    )
    assert not any(isinstance(m, LambdaGELU) for m in model.modules())  # ReLU-ized in place
    files = {p.name for p in out.iterdir()}
    assert BASE_FILES | PROFILE_FILES | {"reluization_report.json", "tokenizer.json"} <= files
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())
    assert set(manifest["files"]) == files - {MANIFEST_FILENAME}
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_act"] == "relu" and "lambda_gelu" not in config
    report = json.loads((out / "reluization_report.json").read_text())
    assert report["lambdas"] == pytest.approx(expected_profile)  # taken before the swap
    assert report["max_error_bound"] == pytest.approx(0.16997120158912 / 40.0)
    assert report["settings"] == {"lambda_init": 1.0, "lambda_temperature": 0.1, "relu_tolerance": 1e-3}
    assert report["unhardened"] is True  # λ = 40 and 90 were set, never hardened to 170
    assert report["metric_name"] == "accuracy"
    assert json.loads((out / "hardness_profile.json").read_text())["lambdas"] == pytest.approx(expected_profile)
    assert (out / "hardness_profile.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "google-bert/bert-base-uncased" and card.data.license == "mit"
    assert card.data.pipeline_tag == "text-classification" and "relu" in card.data.tags
    assert "![λ per layer](hardness_profile.png)" in card.text
    assert "AutoTokenizer.from_pretrained" in card.text
    assert check_release_dir(out) == sorted(files)


def test_release_folder_guards(tmp_path):
    # a folder with someone else's files is refused before the model is touched
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    model = make_model()
    with pytest.raises(ReleaseDirNotEmptyError, match=r"notes\.txt.*overwrite=True"):
        save_release(model, busy)
    assert any(isinstance(m, LambdaGELU) for m in model.modules())
    save_release(model, busy, overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    assert "notes.txt" not in check_release_dir(busy)

    # a previous release is replaced without leftovers (no report/profile this time -> none left)
    release = tmp_path / "release"
    save_release(make_model(), release, report=REPORT)
    assert PROFILE_FILES | {"reluization_report.json"} <= {p.name for p in release.iterdir()}
    relu_model = make_model()
    reluize_for_release(relu_model)
    save_release(relu_model, release)
    assert {p.name for p in release.iterdir()} == BASE_FILES

    # a GELU model is neither λ-GELU nor ReLU; card_kwargs may not override what save_release sets
    with pytest.raises(NotReluModelError, match="hidden_act': 'gelu'"):
        save_release(make_model(lambdas=None), tmp_path / "gelu")
    assert not (tmp_path / "gelu").exists()
    with pytest.raises(ValueError, match="plot_filename"):
        save_release(make_model(), tmp_path / "x", card_kwargs={"plot_filename": "p.png"})
    with pytest.raises(NotLambdaGELUModelError):
        reluize_for_release(make_model(lambdas=None))


def test_check_release_dir_rejects_non_releases(tmp_path):
    with pytest.raises(FileNotFoundError):
        check_release_dir(tmp_path / "missing")
    with pytest.raises(NotAReleaseError, match="no config.json"):
        check_release_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_act": "lambda_gelu"}))
    with pytest.raises(NotAReleaseError, match="does not say 'relu'"):
        check_release_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_act": "relu"}))
    with pytest.raises(NotAReleaseError, match="recording a passed reload check"):
        check_release_dir(tmp_path)  # no manifest: never checked by the release gate, never uploaded
    manifest = {"format": "hf-lambda-gelu-release", "files": ["a.bin"]}
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    with pytest.raises(NotAReleaseError, match="recording a passed reload check"):
        check_release_dir(tmp_path)
    manifest["reload_check"] = {"passed": True}
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    with pytest.raises(NotAReleaseError, match=r"missing: \['a.bin'\]"):
        check_release_dir(tmp_path)


_STOCK_LOAD = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(**tokenizer(json.loads(sys.argv[2]), padding=True, return_tensors="pt")).logits
acts = sorted({type(m).__name__ for n, m in model.named_modules() if n.endswith("intermediate_act_fn")})
print(json.dumps({"logits": logits.tolist(), "acts": acts, "ours": [m for m in sys.modules if m.split(".")[0] == "hf_lambda_gelu"]}))
"""


@pytest.mark.slow
def test_push_uploads_exactly_the_release_and_stock_transformers_loads_it(tmp_path, hub):
    model = make_model()
    tokenizer = make_tokenizer(tmp_path / "tok")
    release = tmp_path / "release"
    release.mkdir()
    (release / "old-notes.txt").write_text("not part of the release")
    url = push_reluized(
        model,
        "me/bert-relu",
        processing_class=tokenizer,
        report=REPORT,
        release_dir=release,
        overwrite=True,
        private=True,
        token=TOKEN,
    )
    assert url == "https://huggingface.co/me/bert-relu/commit/0123abc"
    assert hub.kwargs_of("HfApi") == {"token": TOKEN}
    assert hub.kwargs_of("create_repo") == {"repo_id": "me/bert-relu", "private": True, "exist_ok": True}
    upload = hub.kwargs_of("upload_folder")
    assert upload["folder_path"] == release and upload["delete_patterns"] == "*"
    uploaded = {p.relative_to(hub.remote).as_posix() for p in hub.remote.rglob("*") if p.is_file()}
    assert uploaded == set(check_release_dir(release)) and "old-notes.txt" not in uploaded
    assert json.loads((hub.remote / "config.json").read_text())["hidden_act"] == "relu"
    card = ModelCard.load(hub.remote / "README.md")
    assert (hub.remote / "README.md").read_text().startswith("---\n") and card.data.library_name == "transformers"
    assert 'from_pretrained("me/bert-relu")' in card.text

    done = subprocess.run(
        [sys.executable, "-c", _STOCK_LOAD, str(hub.remote), json.dumps(TEXTS)],
        cwd=tmp_path,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["ours"] == [] and fresh["acts"] == ["ReLU"]
    torch.testing.assert_close(torch.tensor(fresh["logits"]), logits(model, tokenizer), atol=1e-5, rtol=1e-4)


def test_push_to_a_fresh_folder_removes_it_after_success(hub):
    push_reluized(make_model(), "me/x")
    folder = hub.kwargs_of("upload_folder")["folder_path"]
    assert folder.name.startswith("hf-lambda-gelu-release-") and not folder.exists()
    assert hub.kwargs_of("create_repo")["private"] is None


@pytest.mark.parametrize("fail_on", ["create_repo", "upload_folder"])
@pytest.mark.parametrize("fresh_folder", [False, True])
def test_push_failure_keeps_the_release_and_never_shows_the_token(tmp_path, hub, caplog, fail_on, fresh_folder):
    hub.fail_on = fail_on
    caplog.set_level(logging.DEBUG)
    release = None if fresh_folder else tmp_path / "my release"
    with pytest.raises(PushError) as info:
        push_reluized(make_model(), "me/bert-relu", release_dir=release, token=TOKEN, report=REPORT)
    err = info.value
    folder = err.release_dir
    if not fresh_folder:
        assert folder == release.resolve()
    message = str(err)
    assert f"complete and intact at {folder}" in message
    assert message.endswith(f"retry with: hf-lambda-gelu push {shlex.quote(str(folder))} me/bert-relu")
    assert "RuntimeError: 401 Client Error" in message
    assert isinstance(err.__cause__, RuntimeError) and isinstance(err.__cause__.__cause__, ConnectionError)
    assert check_release_dir(folder)  # intact
    full_traceback = "".join(traceback.format_exception(err))
    assert "401 Client Error" in full_traceback and "Bearer" in full_traceback
    assert TOKEN not in full_traceback and TOKEN not in message and TOKEN not in caplog.text
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    if fresh_folder:
        shutil.rmtree(folder)

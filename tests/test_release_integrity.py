"""Publishing never loses a model, never leaks the token, never calls a non-ReLU model "ReLU".

- the manifest is exactly the release: pushing twice into one folder, and a λ-GELU run after a GELU
  run into the same folder (recipe), upload the whole release (config and weights included); every
  file it lists has its SHA-256 there, and a file changed since (a tokenizer, a card) is not uploaded;
- the recipes' output folder is checked before anything runs (non-empty, the model folder, unwritable);
- no file of the run folder and no attribute of the push error chain holds the Hub token (explicit, stored
  login of any shape, or any ``Bearer`` value);
- GELUs no config field controls are refused unless allowed, then listed (report, card);
- unhardened swaps warn (API) and are marked in the report.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import huggingface_hub
import pytest
import torch
from arch_matrix import build
from fake_hub import TOKEN, install_fake_hub
from output_dirs import OutputDirError, check_run_output_dir
from test_recipes import _load_recipe, _recipe_args, bert_case  # noqa: F401 - fixture reused
from transformers import AutoConfig, AutoTokenizer, BertTokenizerFast, ElectraConfig, ElectraForSequenceClassification

from hf_lambda_gelu import LambdaGELU, convert_to_lambda_gelu, reluize, swap_modules
from hf_lambda_gelu.cli import main as cli_main
from hf_lambda_gelu.errors import (
    GELURemnantsError,
    NotAReleaseError,
    PushError,
    ReleaseReloadError,
    ReloadCheckedFileError,
    UnhardenedSwapWarning,
)
from hf_lambda_gelu.release import upload
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, add_release_files, check_release_dir, save_release
from hf_lambda_gelu.release.upload import push_reluized, upload_release


def _hardened(name: str, seed: int = 0):
    model = build(name, seed)
    convert_to_lambda_gelu(model)
    for module in model.modules():
        if isinstance(module, LambdaGELU):
            module.set_lambda(170.0)
    return model


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_pushing_twice_into_one_folder_uploads_the_whole_release_each_time(tmp_path, monkeypatch):
    folder = tmp_path / "release"
    for seed in (0, 1):
        remote = tmp_path / f"remote{seed}"
        hub = install_fake_hub(monkeypatch, remote)
        push_reluized(_hardened("bert", seed), "me/bert-relu", release_dir=folder)
        manifest = json.loads((folder / MANIFEST_FILENAME).read_text())["files"]
        assert {"config.json", "model.safetensors", "README.md"} <= set(manifest)
        assert _files(remote) == {*manifest, MANIFEST_FILENAME} == _files(folder)
        assert hub.kwargs_of("upload_folder")["delete_patterns"] == "*"
        assert json.loads((remote / "config.json").read_text())["hidden_act"] == "relu"


@pytest.mark.slow
def test_gelu_run_then_lambda_gelu_run_into_one_folder(bert_case, tmp_path, monkeypatch):  # noqa: F811
    """The reported loss: a GELU run, then a λ-GELU run into the same folder, pushed (fake Hub, fake token)."""
    recipe = _load_recipe("text_classification")
    out = tmp_path / "out"
    args = _recipe_args("text_classification", {"text_classification": bert_case}, out)
    recipe.main([*args, "--activation_mode", "gelu"])
    assert (out / "model.safetensors").is_file() and json.loads((out / "config.json").read_text())[
        "hidden_act"
    ] == "gelu"
    with pytest.raises(OutputDirError, match=r"is not empty .*--overwrite_output_dir true"):
        recipe.main(args)
    remote = tmp_path / "remote"
    install_fake_hub(monkeypatch, remote)
    push = ["--push_to_hub", "--hub_model_id", "me/bert-relu", "--hub_token", TOKEN]
    checkpoints = ["--save_strategy", "steps", "--save_steps", "2"]
    recipe.main([*args, "--overwrite_output_dir", "true", *push, *checkpoints])
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(manifest)
    assert _files(remote) == {*manifest, MANIFEST_FILENAME}  # the model went up, nothing else did
    assert not any(name.startswith("checkpoint-") for name in _files(remote))
    assert json.loads((remote / "config.json").read_text())["hidden_act"] == "relu"
    # no file of the run folder (checkpoints' training_args.bin included) holds the token
    assert any(p.name == "training_args.bin" for p in out.rglob("*"))
    leaks = [p for p in out.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaks


def _strings_in(obj, seen: set[int], depth: int = 0):
    """Every string reachable from an exception chain: messages, reprs, attributes, HTTP headers."""
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    yield repr(obj)
    if isinstance(obj, BaseException):
        yield str(obj)
        yield from (s for a in obj.args for s in _strings_in(a, seen, depth + 1))
        for linked in (obj.__cause__, obj.__context__):
            if linked is not None:
                yield from _strings_in(linked, seen, depth + 1)
    for value in getattr(obj, "__dict__", {}).values():
        yield from _strings_in(value, seen, depth + 1)
    headers = getattr(obj, "headers", None)
    if headers is not None and hasattr(headers, "items"):
        yield from (f"{k}: {v}" for k, v in headers.items())
    try:
        request = obj.request
    except Exception:  # noqa: BLE001 - httpx raises when a response has no request
        request = None
    if request is not None:
        yield from _strings_in(request, seen, depth + 1)


def test_a_failed_push_scrubs_the_token_from_every_exception_attribute(tmp_path, monkeypatch):
    folder = save_release(_hardened("bert"), tmp_path / "release")
    install_fake_hub(monkeypatch, tmp_path / "remote", fail_on="upload_folder:http")
    with pytest.raises(PushError) as info:
        upload_release(folder, "me/bert-relu", token=TOKEN)
    texts = list(_strings_in(info.value, set()))
    assert any("401 Unauthorized" in t for t in texts)  # the cause is kept...
    assert not [t for t in texts if TOKEN in t]  # ...without the token, in messages, server_message and headers


def test_output_dir_equal_to_or_inside_the_model_folder_is_always_refused(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    for out in (model_dir, model_dir / "sub", tmp_path):
        with pytest.raises(OutputDirError, match="overwrite the checkpoint it starts from"):
            check_run_output_dir(out, model_dir, overwrite=True)
    check_run_output_dir(tmp_path / "new", model_dir)  # fine, and creates nothing
    assert not (tmp_path / "new").exists()


def test_unwritable_output_dir_is_detected_before_training(bert_case, tmp_path):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputDirError, match="cannot be written"):
        check_run_output_dir(blocker / "out", None)
    recipe = _load_recipe("text_classification")
    args = _recipe_args("text_classification", {"text_classification": bert_case}, blocker / "out")
    with pytest.raises(OutputDirError, match="cannot be written"):
        recipe.main(args)
    args = _recipe_args("text_classification", {"text_classification": bert_case}, bert_case["checkpoint"])
    with pytest.raises(OutputDirError, match="model folder"):
        recipe.main([*args, "--overwrite_output_dir", "true"])


def test_gelu_remnants_are_refused_unless_allowed_then_listed(tmp_path):
    model = _hardened("whisper")
    with pytest.raises(GELURemnantsError, match=r"encoder: functional gelu call.*allow_gelu_remnants=True"):
        save_release(model, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    folder = save_release(model, tmp_path / "release", allow_gelu_remnants=True)
    report = json.loads((folder / "reluization_report.json").read_text())
    assert report["gelu_remnants"] == {"encoder": "functional gelu call"}
    card = (folder / "README.md").read_text()
    assert "ReLU (except the GELUs listed below)" in card and "`encoder`: functional gelu call" in card
    assert "**plain ReLU**" not in card


def test_cli_allow_gelu_remnants_flag(tmp_path, capsys):
    """ELECTRA's classification head hard-codes GELU: refused in one line, released with the flag."""
    model = build("electra_classifier")
    model.save_pretrained(tmp_path / "gelu")
    assert cli_main(["convert", str(tmp_path / "gelu"), str(tmp_path / "lg"), "--lambda-init", "170"]) == 0
    assert AutoConfig.from_pretrained(tmp_path / "lg").hidden_act == "lambda_gelu"
    capsys.readouterr()
    assert cli_main(["reluize", str(tmp_path / "lg"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "classifier.activation: GELUActivation (hard-coded module)" in err and "--allow-gelu-remnants" in err
    assert cli_main(["reluize", str(tmp_path / "lg"), str(tmp_path / "out"), "--allow-gelu-remnants"]) == 0
    report = json.loads((tmp_path / "out" / "reluization_report.json").read_text())
    assert report["gelu_remnants"] == {"classifier.activation": "GELUActivation (hard-coded module)"}
    assert report["unhardened"] is False


def test_unhardened_swap_warns_and_is_marked(tmp_path):
    model = build("bert")
    convert_to_lambda_gelu(model)  # λ = 1: never hardened
    with pytest.warns(UnhardenedSwapWarning, match=r"c/min λ = 0\.17 exceeds the tolerance 0\.001"):
        report = reluize(model)
    assert report.unhardened is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reluize(_hardened("bert")).unhardened is False
    lam = build("bert")
    convert_to_lambda_gelu(lam)
    with pytest.warns(UnhardenedSwapWarning):
        folder = save_release(lam, tmp_path / "naive")
    assert "**Naive swap.**" in (folder / "README.md").read_text()
    assert torch.nn.ReLU in {type(m) for m in lam.modules()}


def test_save_release_refuses_a_release_that_reloads_differently(tmp_path):
    """What the package did before: ELECTRA's hard-coded head swapped in memory, GELU again after a reload."""
    model = build("electra_classifier")
    swap_modules(model, lambda m, name: LambdaGELU(170.0) if type(m).__name__ == "GELUActivation" else None)
    model.config.hidden_act = "lambda_gelu"
    with pytest.raises(ReleaseReloadError, match=r"classifier\.activation: ReLU in memory, GELUActivation after"):
        save_release(model, tmp_path / "release")
    assert not (tmp_path / "release").exists()
    assert not list(tmp_path.iterdir())  # the staging folder is gone too


def test_a_bfloat16_release_passes_the_gate_in_its_dtype(tmp_path):
    model = _hardened("bert").to(torch.bfloat16)
    folder = save_release(model, tmp_path / "release")
    check = json.loads((folder / MANIFEST_FILENAME).read_text())["reload_check"]
    assert check["passed"] and check["tolerance"] == pytest.approx(4 * torch.finfo(torch.bfloat16).eps)


@pytest.mark.slow
def test_recipe_refuses_hard_coded_gelus_before_training_unless_allowed(bert_case, tmp_path):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(bert_case["checkpoint"])
    config = ElectraConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    checkpoint = tmp_path / "electra"
    ElectraForSequenceClassification(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    recipe = _load_recipe("text_classification")
    out = tmp_path / "out"
    args = _recipe_args("text_classification", {"text_classification": {**bert_case, "checkpoint": checkpoint}}, out)
    with pytest.raises(GELURemnantsError, match=r"classifier\.activation: GELUActivation \(hard-coded module\)"):
        recipe.main(args)
    assert not out.exists()  # refused when loaded, before any training
    recipe.main([*args, "--allow_gelu_remnants", "true"])
    report = json.loads((out / "reluization_report.json").read_text())
    assert report["gelu_remnants"] == {"classifier.activation": "GELUActivation (hard-coded module)"}
    assert "`classifier.activation`: GELUActivation (hard-coded module)" in (out / "README.md").read_text()


def test_upload_refuses_model_files_changed_after_the_gate(tmp_path, monkeypatch):
    folder = save_release(_hardened("bert"), tmp_path / "release")
    build("bert", seed=1).save_pretrained(tmp_path / "other")  # GELU weights of another model
    (folder / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nEdited by hand.\n")
    install_fake_hub(monkeypatch, tmp_path / "remote")
    with pytest.raises(NotAReleaseError, match=r"\['model.safetensors'\] changed after the reload check"):
        upload_release(folder, "me/bert-relu")
    with pytest.raises(ReloadCheckedFileError, match=r"\['model.safetensors'\] .* were reloaded and checked"):
        add_release_files(folder, ["model.safetensors"])  # a model file is never recorded again
    assert not list((tmp_path / "remote").iterdir())


def _swap_ids(tokenizer_json: Path, a: str, b: str) -> None:
    data = json.loads(tokenizer_json.read_text())
    vocab = data["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    tokenizer_json.write_text(json.dumps(data))


def test_upload_refuses_any_listed_file_changed_or_unhashed_after_the_release_was_written(tmp_path, monkeypatch):
    """Swapping two words' ids in tokenizer.json inverts a sentiment model: never pushed without a word."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie"]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})
    assert tokenizer("good movie")["input_ids"] != tokenizer("bad movie")["input_ids"]
    folder = save_release(_hardened("bert"), tmp_path / "release", processing_class=tokenizer)
    manifest = json.loads((folder / MANIFEST_FILENAME).read_text())
    assert set(manifest["sha256"]) == set(manifest["files"]) >= {"tokenizer.json", "tokenizer_config.json"}
    remote = tmp_path / "remote"
    install_fake_hub(monkeypatch, remote)
    released = (folder / "tokenizer.json").read_bytes()
    _swap_ids(folder / "tokenizer.json", "good", "bad")
    assert AutoTokenizer.from_pretrained(folder)("good")["input_ids"] == tokenizer("bad")["input_ids"]
    with pytest.raises(NotAReleaseError, match=r"\['tokenizer.json'\] changed after the release was written"):
        upload_release(folder, "me/bert-relu")
    (folder / "tokenizer.json").write_bytes(released)
    assert check_release_dir(folder)
    # the card edited by hand: refused until recorded on purpose
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nEdited by hand.\n")
    with pytest.raises(NotAReleaseError, match=r"add_release_files\(.*\['README.md'\]\)"):
        check_release_dir(folder)
    add_release_files(folder, ["README.md"])
    assert "README.md" in check_release_dir(folder)
    # a manifest entry without a hash (a hand-edited manifest, or one written before every file was hashed)
    del manifest["sha256"]["tokenizer_config.json"]
    (folder / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    with pytest.raises(NotAReleaseError, match=r"lists \['tokenizer_config.json'\] without a SHA-256"):
        upload_release(folder, "me/bert-relu")
    assert not list(remote.iterdir())


def test_a_failed_push_scrubs_the_stored_login_token_and_any_bearer_value(tmp_path, monkeypatch):
    """The stored login of an SSO / OAuth user is not hf_-shaped; an endpoint echoing headers showed it."""
    stored = "sso-7f3a9c2e41d8b6-not-hf-shaped"
    (tmp_path / "token").write_text(stored)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    assert huggingface_hub.get_token() == stored

    class EchoingEndpoint:  # what HfApi does with no token: send the stored login; the endpoint echoes headers
        def __init__(self, token=None):
            self.token = token or huggingface_hub.get_token()

        def create_repo(self, repo_id, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            raise RuntimeError(
                f"502 Bad Gateway from proxy; request headers: authorization: Bearer {self.token}, "
                "x-upstream-authorization: Bearer eyJhbGciOi.upstream-secret"
            )

    folder = save_release(_hardened("bert"), tmp_path / "release")
    monkeypatch.setattr(upload, "HfApi", EchoingEndpoint)
    with pytest.raises(PushError) as info:
        upload_release(folder, "me/bert-relu")
    texts = list(_strings_in(info.value, set()))
    assert "502 Bad Gateway" in str(info.value) and "Bearer ***" in str(info.value)
    assert not [t for t in texts if stored in t or "upstream-secret" in t]

"""Model sources: a local folder or a Hub id (with a revision), fetched from a Hub served over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from fake_hub import serve_model_repo
from helpers import offline_env
from test_relufy_cli import _sentence_transformers_dir, _texts

from hf_lambda_gelu import model_source
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import InvalidSettingError
from hf_lambda_gelu.model_source import load_model, model_folder
from hf_lambda_gelu.release.folder import check_release_dir
from hf_lambda_gelu.relufy import RelufyArguments, relufy


@pytest.fixture
def no_hub(monkeypatch):
    """Fail the test if anything is sent to the Hub."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"sent to the Hub: {args} {kwargs}")

    monkeypatch.setattr(model_source, "snapshot_download", refuse)


@pytest.mark.parametrize("typo", ["gleu", "./modle", "/data/no/such/ckpt", "models--x"])
def test_a_mistyped_local_path_never_goes_to_the_hub(tmp_path, capsys, no_hub, typo):
    data = _texts(tmp_path / "t.txt", 20)
    assert main(["relufy", typo, str(tmp_path / "out"), "--data", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("does not exist" in err or "No such local folder" in err), err
    assert not (tmp_path / "out").exists()


def test_a_revision_with_a_local_folder_is_refused(tmp_path, no_hub):
    folder = _sentence_transformers_dir(tmp_path)
    with pytest.raises(InvalidSettingError, match="a revision is for Hub ids"):
        model_folder(str(folder), revision="v1")


def test_offline_without_a_cached_copy_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(model_source.constants, "HF_HUB_OFFLINE", True)
    data = _texts(tmp_path / "t.txt", 20)
    assert main(["relufy", "nobody-here/no-such-model-3141", str(tmp_path / "out"), "--data", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "'nobody-here/no-such-model-3141' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in err
    assert "hf download nobody-here/no-such-model-3141" in err


def test_the_api_takes_a_folder_path_and_brings_its_pooling(tmp_path):
    folder = _sentence_transformers_dir(tmp_path, {"word_embedding_dimension": 32, "pooling_mode_cls_token": True})
    assert load_model(str(folder)).pooling.mode == "cls"
    train = [{"input_ids": [2, 5 + i % 7, 6, 3], "attention_mask": [1, 1, 1, 1]} for i in range(8)]
    args = RelufyArguments(output_dir=str(tmp_path / "work"), max_steps=1, report_to="none", use_cpu=True)
    twin, _ = relufy(str(folder), train, args)
    assert twin.config.hidden_act == "relu"


_HUB_SCRIPT = """
import json, sys
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import ModelSourceError
from hf_lambda_gelu.model_source import model_folder
out, data = sys.argv[1], sys.argv[2]
status = main(["relufy", "my-org/st-gelu", out, "--revision", "v1", "--data", data, "--max-steps", "2",
               "--batch-size", "8"])
errors = []
for source, revision in (("my-org/st-gelu", "v9"), ("my-org/missing", None)):
    try:
        model_folder(source, revision=revision)
    except ModelSourceError as err:
        errors.append(str(err))
print(json.dumps({"status": status, "errors": errors}))
"""


@pytest.mark.slow
def test_a_hub_id_relufies_through_the_fake_hub(tmp_path):
    import sentence_transformers as st

    repo = _sentence_transformers_dir(tmp_path)
    (repo / "onnx").mkdir()
    (repo / "onnx" / "model.onnx").write_bytes(b"not for pytorch")
    (repo / "pytorch_model.bin").write_bytes(b"pickled twin of model.safetensors")
    data, out = _texts(tmp_path / "t.txt", 150), tmp_path / "out"
    with serve_model_repo(repo, "my-org/st-gelu", revision="v1") as hub:
        env = offline_env(tmp_path, HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0")
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_HUB_SCRIPT), str(out), str(data)], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 0, proc.stderr[-3000:]
    downloaded = {
        r.split(" ", 1)[1].rsplit(f"/{hub.sha}/", 1)[-1] for r in hub.requests if r.startswith("GET /my-org/")
    }
    assert {"model.safetensors", "config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json"} <= downloaded
    assert not downloaded & {"onnx/model.onnx", "pytorch_model.bin"}  # other formats and pickled twins stay there
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert name in check_release_dir(out)
    assert st.SentenceTransformer(str(out), device="cpu").encode(["the cat sat"]).shape == (1, 32)
    card = (out / "README.md").read_text()
    assert "my-org/st-gelu" in card and str(tmp_path) not in card
    wrong_revision, missing = result["errors"]
    assert "Revision 'v9' is not a branch, tag or commit of 'my-org/st-gelu'" in wrong_revision
    assert "'my-org/missing' is not a model repo on http://127.0.0.1:" in missing

"""LambdaGELUTrainer.push_to_hub publishes a clean ReLU release (HfApi patched: no network)."""

import json
import subprocess
import sys

import pytest
import torch
from fake_hub import TOKEN, install_fake_hub
from tiny_data import accuracy, text_dataset, tiny_bert, training_args

from hf_lambda_gelu import LambdaGELUTrainer
from hf_lambda_gelu.errors import PushError


def _trained(tmp_path, **overrides):
    data = text_dataset()
    args = training_args(
        tmp_path / "out", save_strategy="steps", save_steps=4, hub_model_id="me/tiny-relu", **overrides
    )
    trainer = LambdaGELUTrainer(
        model=tiny_bert(), args=args, train_dataset=data, eval_dataset=data, compute_metrics=accuracy
    )
    trainer.train()
    return trainer


@pytest.mark.slow
def test_push_uploads_only_the_release_and_it_loads_in_stock_transformers(tmp_path, monkeypatch):
    trainer = _trained(tmp_path)
    (tmp_path / "out" / "stale.bin").write_bytes(b"old")
    hub = install_fake_hub(monkeypatch, tmp_path / "remote")
    url = trainer.push_to_hub(token=TOKEN, dataset_names=["random-ids"])
    assert url.startswith("https://huggingface.co/me/tiny-relu/commit/")
    uploaded = {p.name for p in (tmp_path / "remote").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "README.md",
        "hardness_profile.png",
        "reluization_report.json",
    } <= uploaded
    assert not any(name.startswith("checkpoint") or name == "stale.bin" for name in uploaded)
    assert hub.kwargs_of("upload_folder")["delete_patterns"] == "*"
    assert json.loads((tmp_path / "remote" / "config.json").read_text())["hidden_act"] == "relu"
    card = (tmp_path / "remote" / "README.md").read_text()
    assert "relu" in card and "lambda-gelu" in card and TOKEN not in card
    report = json.loads((tmp_path / "remote" / "reluization_report.json").read_text())
    assert "naive_swap" not in report and "untouched starting checkpoint" in report["naive_swap_unavailable"]
    assert report["max_error_bound"] == pytest.approx(1e-3, rel=1e-4) and report["road"]["log_history"]
    # stock transformers in a fresh process (package not imported) gives the same outputs
    ids = torch.randint(1, 60, (3, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = trainer.model.eval()(input_ids=ids).logits
    code = (
        "import sys, json, torch; from transformers import AutoModelForSequenceClassification as A;"
        f"m = A.from_pretrained({str(tmp_path / 'remote')!r}).eval();"
        f"out = m(input_ids=torch.tensor({ids.tolist()})).logits;"
        "assert 'hf_lambda_gelu' not in sys.modules; print(json.dumps(out.tolist()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.testing.assert_close(torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1])), expected)


@pytest.mark.slow
def test_failed_push_keeps_the_release_and_never_shows_the_token(tmp_path, monkeypatch, caplog):
    trainer = _trained(tmp_path, reluize_at_end=False)  # push_to_hub ReLU-izes (and reports) itself
    install_fake_hub(monkeypatch, tmp_path / "remote", fail_on="upload_folder")
    with pytest.raises(PushError) as err:
        trainer.push_to_hub(token=TOKEN)
    release = tmp_path / "out" / "release"
    assert str(release) in str(err.value) and "hf-lambda-gelu push" in str(err.value)
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    assert {"config.json", "model.safetensors", "README.md", "reluization_report.json"} <= {
        p.name for p in release.iterdir()
    }
    assert trainer.model.config.hidden_act == "relu"


def test_push_to_hub_true_uploads_no_checkpoint_during_training(tmp_path, monkeypatch):
    """push_to_hub=True runs with hub_strategy='end': the Trainer's per-checkpoint upload never fires."""
    from types import SimpleNamespace

    import transformers.trainer
    from transformers.trainer_utils import HubStrategy

    uploads = []
    monkeypatch.setattr(LambdaGELUTrainer, "init_hf_repo", lambda self, *a, **k: None)  # no Hub repo offline
    monkeypatch.setattr(
        transformers.trainer, "hf_api", lambda: SimpleNamespace(upload_folder=lambda **k: uploads.append(k))
    )
    args = training_args(
        tmp_path / "out",
        save_strategy="steps",
        save_steps=2,
        push_to_hub=True,
        hub_model_id="me/x",
        reluize_at_end=False,
    )
    assert args.hub_strategy == HubStrategy.EVERY_SAVE
    trainer = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset(n=32))
    assert trainer.args.hub_strategy == HubStrategy.END
    trainer.train()
    assert (tmp_path / "out" / "checkpoint-8").is_dir() and uploads == []

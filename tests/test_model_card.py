"""Model card rendering: header metadata, body sections, hostile strings, missing inputs, packaging."""

from __future__ import annotations

import importlib.resources
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import BertConfig, GPT2Config

from hf_lambda_gelu import ReluizeReport
from hf_lambda_gelu.release import card as model_card
from hf_lambda_gelu.release.card import (
    TEMPLATE_NAME,
    build_model_card,
    infer_auto_class,
    infer_pipeline_tag,
    load_template,
    resolve_target_lambda,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYERS = [f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn" for i in range(2)]
REPORT = {
    "metric_name": "accuracy",
    "before_swap": {"eval_accuracy": 0.91, "eval_loss": 0.3, "eval_runtime": 1.5, "epoch": 3.0},
    "after_swap": {"eval_accuracy": 0.905, "eval_loss": 0.31},
    "max_abs_logit_diff": 0.002,
    "mean_abs_logit_diff": 1e-4,
    "prediction_agreement": 0.995,
    "naive_swap": {
        "after_swap": {"eval_accuracy": 0.62, "eval_loss": 1.1},
        "max_abs_logit_diff": 1.3,
        "mean_abs_logit_diff": 0.2,
        "prediction_agreement": 0.8,
    },
    "lambdas": {LAYERS[0]: 150.0, LAYERS[1]: 170.0},
    "learned_lambdas": {LAYERS[0]: 1.25, LAYERS[1]: 2.5},
    "error_bounds": {LAYERS[0]: 0.00113, LAYERS[1]: 0.001},
    "max_error_bound": 0.00113,
    "target_lambda": 170.0,
    "settings": {
        "lambda_init": 1.0,
        "lambda_temperature": 0.1,
        "lambda_learning_rate": 0.01,
        "hardening_start": 0.75,
        "hardening_shape": "cosine",
        "relu_tolerance": 0.001,
        "relu_target_lambda": None,
    },
}
HOSTILE = "my \"model\": v1 # not a comment\n---\nnext: line — ünïcødé 日本 'quoted' | pipe"


def relu_config(architecture: str = "BertForSequenceClassification") -> BertConfig:
    return BertConfig(hidden_act="relu", architectures=[architecture])


def header(card: ModelCard) -> dict:
    """The YAML header of the rendered text, parsed on its own."""
    match = re.match(r"\A---\n(.*?)\n---\n", card.content, re.S)
    assert match, card.content[:200]
    return yaml.safe_load(match.group(1))


def test_full_card_metadata_and_sections(tmp_path):
    card = build_model_card(
        model=relu_config(),
        base_model="google-bert/bert-base-uncased",
        report=ReluizeReport.from_dict(REPORT),
        dataset_names=["stanfordnlp/sst2"],
        eval_dataset="stanfordnlp/sst2",
        license="apache-2.0",
        repo_id="me/bert-relu",
        processor_auto_class="AutoTokenizer",
        plot_filename="hardness_profile.png",
        extra_text="Trained for 3 epochs.",
    )
    meta = header(card)
    assert meta["base_model"] == "google-bert/bert-base-uncased"
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["stanfordnlp/sst2"]
    assert meta["tags"] == ["relu", "lambda-gelu", "relu-ization", "bert"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "bert-base-uncased-relu"
    (result,) = entry["results"]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {"name": "stanfordnlp/sst2", "type": "stanfordnlp/sst2"}
    values = {m["name"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy (before ReLU swap, λ-GELU)": 0.91, "accuracy (after ReLU swap, this model)": 0.905}
    assert {m["type"] for m in result["metrics"]} == {"accuracy"}

    text = card.text
    for section in ("## How it was made", "## Hardness profile", "## Disruption of the final swap", "## How to use"):
        assert section in text
    assert "| Initial λ | 1 |" in text and "| λ learning rate | 0.01 |" in text
    assert "| Hardening starts at (fraction of training) | 0.75 |" in text and "cosine" in text
    assert "| Tolerance ε (worst-case per-activation error) | 0.001 |" in text
    assert "| Target λ* of the hardening | 170 |" in text and "| Swap bound c/λ* (per activation) | 0.001 |" in text
    assert "![λ per layer](hardness_profile.png)" in text
    assert f"| `{LAYERS[0]}` | 1.25 | 150 | 0.00113 |" in text
    assert "| Naive GELU → ReLU swap |" in text
    assert "| **accuracy** | 0.91 | 0.905 | 0.62 |" in text
    assert "| loss | 0.3 | 0.31 | 1.1 |" in text
    assert "runtime" not in text and "epoch |" not in text  # timing entries are not metrics
    assert "| max \\|Δ logits\\| | — | 0.002 | 1.3 |" in text
    assert "| prediction agreement | — | 99.50% | 80.00% |" in text
    assert 'AutoModelForSequenceClassification.from_pretrained("me/bert-relu")' in text
    assert 'tokenizer = AutoTokenizer.from_pretrained("me/bert-relu")' in text
    assert "trust_remote_code=" not in text and "hf_lambda_gelu" not in text.split("## How to use")[1].split("##")[0]
    assert "## Notes\n\nTrained for 3 epochs." in text
    assert "## Limitations" in text
    assert "@misc{perezcorral2026lambdagelu" in text and "eprint        = {2603.21991}" in text
    assert "Learning Gating Hardness for Controlled {ReLU}-ization in Deep Networks" in text
    assert "None" not in text

    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == "google-bert/bert-base-uncased"
    assert len(loaded.data.eval_results) == 2


def test_the_card_says_what_the_recorded_settings_did():
    learned = build_model_card(model=relu_config(), report=ReluizeReport.from_dict(REPORT)).text
    assert "λ ≥ 1\nwas learned per layer, then hardened deterministically towards λ* = 170" in learned
    assert (
        "λ learned per layer (λ = 1 + softplus(s/τ), λ learning rate 0.01) for the first 75 % of training;" in learned
    )
    assert "the last 25 % trained with exact ReLU forwards" not in learned  # no hardening_end recorded: no window
    pinned_settings = {**REPORT["settings"], "hardening_start": 0.0, "hardening_end": 1.0, "hardness_pressure": 0.5}
    pinned_settings |= {"distill_alpha": 0.0, "self_distill_alpha": 0.3, "relu_target_per_layer": True}
    # an old report (λ "learned" at step 0 = λ_init) with the pinned settings: the card trusts the settings
    pinned = build_model_card(
        model=relu_config(), report=ReluizeReport.from_dict({**REPORT, "settings": pinned_settings})
    )
    text = pinned.text
    assert "λ pinned from the first step at λ = 1 (not learned)" in text and "λ learned" not in text
    assert (
        "by 100 % of training, the weights training throughout; λ reached λ* at the last step (no consolidation)"
        in text
    )
    assert (
        "training loss: the task loss plus self-distillation to the hardening-start snapshot (α = 0.3, T = 2)" in text
    )
    for inert in ("λ learning rate", "Hardness pressure", "relu_target_per_layer"):  # did nothing: not listed
        assert f"| {inert}" not in text
    assert f"| `{LAYERS[0]}` | 150 | 0.00113 |" in text


def test_every_section_renders_without_inputs():
    card = build_model_card(model=BertConfig(hidden_act="relu"))
    meta = header(card)
    assert meta == {"library_name": "transformers", "tags": ["relu", "lambda-gelu", "relu-ization", "bert"]}
    text = card.text
    assert "The λ and hardening settings of this run were not recorded." in text
    assert "No hardness profile was recorded for this release." in text
    assert "No disruption report was recorded for this release." in text
    assert "the base checkpoint (not recorded)" in text
    assert 'AutoModel.from_pretrained("<repo_id or local folder>")' in text
    assert "## Notes" not in text and "None" not in text
    assert not re.search(r"\{\{ *\w+|\{%", text)  # no unrendered Jinja


def test_partial_report_renders_what_is_there():
    report = {"after_swap": {"eval_f1": 0.8}, "max_abs_logit_diff": 0.01, "settings": {"relu_tolerance": 0.002}}
    card = build_model_card(model=relu_config(), report=ReluizeReport.from_dict(report), profile={LAYERS[0]: 90.0})
    text = card.text
    assert "model-index" not in header(card)  # no metric_name: nothing to index
    assert "Naive" not in text
    assert "| f1 | — | 0.8 |" in text and "| max \\|Δ logits\\| | — | 0.01 |" in text
    assert "| Target λ* of the hardening | 84.99 |" in text  # c/ε
    assert f"| `{LAYERS[0]}` | 90 | 0.00189 |" in text and "![λ per layer]" not in text
    assert "learned" not in text  # no learned profile, and the card claims no learning
    assert "whose gate hardness λ ≥ 1\nwas hardened towards λ* = 84.99, and finally swapped" in text
    assert "c/min λ = 0.00189" in text


def test_hostile_user_strings_survive_the_yaml_header(tmp_path):
    card = build_model_card(
        model=relu_config(),
        base_model=HOSTILE,
        model_name=HOSTILE,
        report=ReluizeReport(metric_name="accuracy", before_swap={"eval_accuracy": 0.5}, after_swap={"accuracy": 0.5}),
        dataset_names=[HOSTILE, "org/data"],
        eval_dataset=HOSTILE,
        license=HOSTILE,
        extra_text=f"{HOSTILE}\n\n---\n\nmore: text",
        repo_id='me/with"quote',
    )
    path = tmp_path / "README.md"
    card.save(path)
    for meta in (header(card), ModelCard.load(path).data.to_dict()):
        assert meta["license"] == HOSTILE
        assert meta["model-index"][0]["name"] == HOSTILE
        assert meta["model-index"][0]["results"][0]["dataset"]["name"] == HOSTILE
        assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "custom"
        assert "base_model" not in meta  # not a Hub id: named in the text only
        assert meta["datasets"] == ["org/data"]
        assert meta["library_name"] == "transformers"
    text = ModelCard.load(path).text
    one_line = " ".join(HOSTILE.split())
    assert f"# {one_line.replace('|', chr(92) + '|')}\n" in text  # title on one line
    assert one_line.replace("|", "\\|") in text.split("## How it was made")[1]
    assert "more: text" in text
    assert 'from_pretrained("me/with\\"quote")' in text


def test_base_model_that_is_a_local_path_stays_out_of_the_header(tmp_path):
    card = build_model_card(model=relu_config(), base_model=str(tmp_path))
    assert "base_model" not in header(card)
    assert f"**Base checkpoint:** {tmp_path.name}\n" in card.text  # its name only: no path of this machine
    assert str(tmp_path.parent) not in card.text


@pytest.mark.parametrize(
    ("architecture", "auto_class", "tag"),
    [
        ("BertForSequenceClassification", "AutoModelForSequenceClassification", "text-classification"),
        ("BertForMaskedLM", "AutoModelForMaskedLM", "fill-mask"),
        ("BertModel", "AutoModel", None),
        ("GPT2LMHeadModel", "AutoModelForCausalLM", "text-generation"),
        ("ViTForImageClassification", "AutoModelForImageClassification", "image-classification"),
        ("NotAModel", "AutoModel", None),
    ],
)
def test_auto_class_and_pipeline_tag(architecture, auto_class, tag):
    config = BertConfig(architectures=[architecture])
    assert infer_auto_class(config) == auto_class
    assert infer_pipeline_tag(config) == tag


def test_gpt2_card_names_its_activation_field():
    config = GPT2Config(activation_function="relu", architectures=["GPT2LMHeadModel"])
    card = build_model_card(model=config, pipeline_tag="text-generation")
    assert "`activation_function: relu`" in card.text
    assert header(card)["tags"][-1] == "gpt2"


def test_resolve_target_lambda():
    assert resolve_target_lambda(REPORT) == 170.0
    assert resolve_target_lambda({"settings": {"relu_target_lambda": 300, "relu_tolerance": 0.1}}) == 300.0
    assert resolve_target_lambda(settings={"relu_tolerance": 1e-3}) == pytest.approx(169.97, abs=0.01)
    assert resolve_target_lambda() is None


@pytest.mark.slow
def test_wheel_ships_the_template_and_the_packaged_copy_is_used(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", project)
    shutil.copytree(
        REPO_ROOT / "hf_lambda_gelu", project / "hf_lambda_gelu", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "model_cards", project / "model_cards")
    readme = REPO_ROOT / "README.md"
    (project / "README.md").write_text(readme.read_text(encoding="utf-8") if readme.exists() else "stub\n")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", ".", "-w", str(tmp_path / "dist")]
    if subprocess.run([*build, "--no-build-isolation"], cwd=project, capture_output=True).returncode != 0:
        # this environment's setuptools is older than build-system.requires: build as pip install does
        subprocess.run(build, cwd=project, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped = zf.read(f"hf_lambda_gelu/model_cards/{TEMPLATE_NAME}").decode()
        zf.extractall(tmp_path / "site")
    assert shipped == (REPO_ROOT / "model_cards" / TEMPLATE_NAME).read_text(encoding="utf-8")
    assert "hf_lambda_gelu/model_cards/README.md" not in names
    modules = {p.relative_to(project).as_posix() for p in (project / "hf_lambda_gelu").rglob("*.py")}
    missing = sorted(modules - set(names))
    assert not missing, f"{missing} are not in the wheel: list their packages in pyproject.toml [tool.setuptools]"

    # load_template reads the installed package's copy (importlib.resources) before any checkout
    packaged = tmp_path / "site" / "hf_lambda_gelu" / "model_cards" / TEMPLATE_NAME
    packaged.write_text(shipped + "\n<!-- packaged copy -->\n", encoding="utf-8")
    real_files = importlib.resources.files
    monkeypatch.setattr(
        model_card.importlib.resources,
        "files",
        lambda package: tmp_path / "site" / "hf_lambda_gelu" if package == "hf_lambda_gelu" else real_files(package),
    )
    assert load_template().endswith("<!-- packaged copy -->\n")
    assert "<!-- packaged copy -->" in build_model_card(model=relu_config()).text


def test_road_settings_appear_in_the_settings_table():
    settings = {"hardening_start": 0.05, "hardening_end": 0.25, "hardening_lr_floor": None, "distill_alpha": 1.0}
    text = build_model_card(model=relu_config(), settings=settings).content
    assert re.search(r"\| λ reaches λ\* at \(fraction of training; ReLU forwards after it\) \| 0\.25 \|", text)
    assert re.search(r"\| Feature distillation to the original model \(weight; 0 = off\) \| 1 \|", text)
    assert "Learning-rate floor" not in text  # unset settings are left out

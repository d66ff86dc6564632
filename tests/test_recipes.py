"""The recipes (recipes/*.py): real runs on tiny offline checkpoints and data.

- Each recipe under ``accelerate launch --config_file recipes/configs/cpu_ddp.yaml`` (2 gloo ranks,
  checked from each rank's log line), a few steps, then the output folder: ReLU config loadable by
  stock transformers, processor, model card, profile, report, manifest and ``all_results.json``.
- The three ``--activation_mode`` values write the same ``all_results.json`` layout (text recipe,
  in-process; one run from a .json argument file).
- ``--push_to_hub`` uploads exactly the release (the Hub client is faked).
- Bad input fails early with messages that say what to pass.
- The launch configuration files parse, and the FSDP2 wrap classes exist in the models.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from common import RESULTS_FILENAME, ColumnNotFoundError, MissingDataError
from helpers import BERT_SPECIAL_TOKENS, assert_tokenizes_apart, offline_env, wordpiece_tokenizer
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

import hf_lambda_gelu.release.upload as hub_upload
from hf_lambda_gelu.release import folder as release

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
CONFIGS = RECIPES / "configs"
WORDS = ["good", "great", "fine", "nice", "bad", "awful", "poor", "sad", "the", "film", "was", "very", "a", "plot"]


def _load_recipe(name: str):
    """Import recipes/<name>.py as module ``recipe_<name>`` (the recipes are scripts, not a package).

    Their helpers (``from common import ...``) resolve through ``recipes/`` on ``sys.path`` (pytest's
    ``pythonpath`` setting), as when the scripts run.
    """
    module_name = f"recipe_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, RECIPES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses resolve their annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[module_name]


# -- tiny offline checkpoints and data ------------------------------------------------------------------------------


def _sentences(n: int, seed: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        positive = bool(rng.integers(2))
        mood = rng.choice(WORDS[:4] if positive else WORDS[4:8])
        rest = rng.choice(WORDS[8:], size=4)
        rows.append((" ".join(["the", "film", "was", mood, *rest]), "pos" if positive else "neg"))
    return rows


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("sentence,label\n" + "".join(f"{s},{y}\n" for s, y in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bert_case(tmp_path_factory) -> dict:
    """A tiny GELU BERT classifier + WordPiece tokenizer saved as a checkpoint, and csv data (string labels)."""
    root = tmp_path_factory.mktemp("bert")
    tokenizer = wordpiece_tokenizer(WORDS, model_max_length=32)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    checkpoint = root / "checkpoint"
    BertForSequenceClassification(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    # what the recipe loads: words must be words, or every run trains on constant inputs
    assert_tokenizes_apart(AutoTokenizer.from_pretrained(checkpoint), "the film was good", "the film was awful")
    return {
        "checkpoint": checkpoint,
        "train": _write_csv(root / "train.csv", _sentences(48, 0)),
        "validation": _write_csv(root / "validation.csv", _sentences(16, 1)),
    }


@pytest.fixture(scope="module")
def vit_case(tmp_path_factory) -> dict:
    """A tiny GELU ViT classifier + image processor, and two class folders of 16×16 PNGs (imagefolder)."""
    root = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_labels=2,
    )  # fmt: skip
    checkpoint = root / "checkpoint"
    ViTForImageClassification(config).save_pretrained(checkpoint)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(checkpoint)
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("validation", 6)):
        for label, channel in (("red", 0), ("blue", 2)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
                pixels[..., channel] += 150
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return {"checkpoint": checkpoint, "train": root / "train", "validation": root / "validation"}


@pytest.fixture(scope="module")
def gpt2_case(tmp_path_factory) -> dict:
    """A tiny GELU GPT-2 (gelu_new) + a word-level tokenizer trained on the corpus, and .txt files."""
    root = tmp_path_factory.mktemp("gpt2")
    lines = [sentence for sentence, _ in _sentences(80, 2)]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(lines, trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", bos_token="<eos>", model_max_length=64
    )
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    checkpoint = root / "checkpoint"
    GPT2LMHeadModel(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    assert_tokenizes_apart(AutoTokenizer.from_pretrained(checkpoint), "the film was good", "the film was awful")
    (root / "train.txt").write_text("\n".join(lines[:64]) + "\n", encoding="utf-8")
    (root / "validation.txt").write_text("\n".join(lines[64:]) + "\n", encoding="utf-8")
    return {"checkpoint": checkpoint, "train": root / "train.txt", "validation": root / "validation.txt"}


FEW_STEPS = [
    "--max_steps", "4", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
    "--logging_steps", "2", "--learning_rate", "1e-3", "--lambda_learning_rate", "0.05",
    "--hardening_start", "0.5", "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0",
]  # fmt: skip


def _recipe_args(case: str, cases: dict, output_dir: Path) -> list[str]:
    data = cases[case]
    flags = ["--model_name_or_path", str(data["checkpoint"]), "--output_dir", str(output_dir), *FEW_STEPS]
    flags += ["--cache_dir", str(output_dir.parent / "cache")]  # data set and metric caches in tmp
    if case == "image_classification":
        return [*flags, "--train_dir", str(data["train"]), "--validation_dir", str(data["validation"])]
    flags += ["--train_file", str(data["train"]), "--validation_file", str(data["validation"])]
    return [*flags, "--block_size", "16"] if case == "causal_lm" else flags


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RELU_KEY = {
    "text_classification": "hidden_act",
    "image_classification": "hidden_act",
    "causal_lm": "activation_function",
}
AUTO = {
    "text_classification": (AutoModelForSequenceClassification, AutoTokenizer),
    "image_classification": (AutoModelForImageClassification, AutoImageProcessor),
    "causal_lm": (AutoModelForCausalLM, AutoTokenizer),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["text_classification", "image_classification", "causal_lm"])
def test_recipe_runs_under_accelerate_ddp_and_writes_a_relu_release(recipe, tmp_path, bert_case, vit_case, gpt2_case):
    cases = {"text_classification": bert_case, "image_classification": vit_case, "causal_lm": gpt2_case}
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "cpu_ddp.yaml"),
        "--main_process_port", str(_free_port()), str(RECIPES / f"{recipe}.py"), *_recipe_args(recipe, cases, out),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env=offline_env(tmp_path, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    # two ranks of one gloo group (each logs its own line)
    for rank in (0, 1):
        assert f"Process rank: {rank}, world size: 2" in log, log[-3000:]

    config = json.loads((out / "config.json").read_text())
    assert config[RELU_KEY[recipe]] == "relu" and "lambda_gelu" not in config
    results = json.loads((out / RESULTS_FILENAME).read_text())
    assert results["activation_mode"] == "lambda_gelu"
    assert results["reluize_max_abs_logit_diff"] < 0.05  # hardened to λ* ≈ 170 before the swap
    assert results["reluize_after_eval_loss"] == pytest.approx(results["eval_loss"], rel=1e-5)
    if recipe == "causal_lm":
        assert results["perplexity"] == pytest.approx(np.exp(results["eval_loss"]), rel=1e-6)
    else:
        assert 0.0 <= results["eval_accuracy"] <= 1.0 and results["reluize_after_eval_accuracy"] is not None
    manifest = json.loads((out / release.MANIFEST_FILENAME).read_text())["files"]
    for name in ("README.md", "config.json", "model.safetensors", "hardness_profile.png", "reluization_report.json"):
        assert name in manifest and (out / name).is_file()
    card = (out / "README.md").read_text()
    assert "relu" in card.lower() and "Hardness profile" in card
    # stock transformers loads the release: model and processor
    model_cls, processor_cls = AUTO[recipe]
    model = model_cls.from_pretrained(out)
    assert not any("LambdaGELU" in type(m).__name__ for m in model.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    processor_cls.from_pretrained(out)


# -- in-process runs (text recipe) ----------------------------------------------------------------------------------


@pytest.fixture
def text_recipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _load_recipe("text_classification")
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_activation_modes_write_the_same_results_layout(text_recipe, bert_case, tmp_path):
    results, configs = {}, {}
    for mode in ("lambda_gelu", "gelu", "naive_relu_swap"):
        out = tmp_path / mode
        args = [*_recipe_args("text_classification", {"text_classification": bert_case}, out)]
        args += ["--activation_mode", mode]
        if mode == "gelu":  # the same run from a single .json argument file
            values = {flag.removeprefix("--"): _typed(v) for flag, v in zip(args[::2], args[1::2], strict=True)}
            path = tmp_path / "args.json"
            path.write_text(json.dumps(values))
            args = [str(path)]
        text_recipe.main(args)
        results[mode] = json.loads((out / RESULTS_FILENAME).read_text())
        configs[mode] = json.loads((out / "config.json").read_text())

    layouts = {mode: sorted(r) for mode, r in results.items()}
    assert layouts["gelu"] == layouts["lambda_gelu"] == layouts["naive_relu_swap"]
    assert {"reluize_before_eval_accuracy", "reluize_after_eval_accuracy", "reluize_prediction_agreement"} <= set(
        layouts["gelu"]
    )
    # gelu: the stock path, no swap
    gelu = results["gelu"]
    assert configs["gelu"]["hidden_act"] == "gelu" and gelu["activation_mode"] == "gelu"
    assert gelu["reluize_max_abs_logit_diff"] is None and gelu["reluize_after_eval_accuracy"] is None
    assert (tmp_path / "gelu" / "README.md").is_file()
    # naive swap: GELU fine-tuned, then swapped straight to ReLU
    naive = results["naive_relu_swap"]
    assert configs["naive_relu_swap"]["hidden_act"] == "relu"
    assert naive["reluize_max_abs_logit_diff"] > 0 and naive["reluize_after_eval_accuracy"] == naive["eval_accuracy"]
    report = json.loads((tmp_path / "naive_relu_swap" / "reluization_report.json").read_text())
    assert report["lambdas"] and all(v == pytest.approx(1.0, abs=1e-5) for v in report["lambdas"].values())
    # λ-GELU: hardened before the swap, so the swap barely moves the logits
    lam = results["lambda_gelu"]
    assert configs["lambda_gelu"]["hidden_act"] == "relu"
    assert lam["reluize_max_abs_logit_diff"] < 0.05 and lam["reluize_prediction_agreement"] == 1.0
    # the same data and steps for every mode
    assert gelu["train_samples"] == naive["train_samples"] == lam["train_samples"] == 48
    assert gelu["eval_samples"] == lam["eval_samples"] == 16


def _typed(text: str):
    """A CLI value as the JSON value it stands for (JSON argument files are typed)."""
    if text in ("true", "false"):
        return text == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


class FakeHfApi:
    """Records what upload_release sends (the Hub boundary)."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://hub.invalid/{kwargs['repo_id']}/commit/1"})()


@pytest.mark.slow
def test_push_to_hub_uploads_exactly_the_release(text_recipe, bert_case, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_upload, "HfApi", FakeHfApi)
    FakeHfApi.calls = []
    out = tmp_path / "out"
    args = _recipe_args("text_classification", {"text_classification": bert_case}, out)
    text_recipe.main([*args, "--push_to_hub", "--hub_model_id", "me/tiny-bert-relu"])
    (create, upload) = FakeHfApi.calls
    assert create[:2] == ("create_repo", "me/tiny-bert-relu")
    assert upload[1] == "me/tiny-bert-relu" and Path(upload[2]["folder_path"]) == out
    sent = set(upload[2]["allow_patterns"])
    manifest = json.loads((out / release.MANIFEST_FILENAME).read_text())["files"]
    assert sent == {*manifest, release.MANIFEST_FILENAME}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= sent
    assert "me/tiny-bert-relu" in (out / "README.md").read_text()  # the card's loading snippet


def test_missing_data_says_what_to_pass(text_recipe, bert_case, tmp_path):
    args = ["--model_name_or_path", str(bert_case["checkpoint"]), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(MissingDataError, match="--dataset_name .* --train_file"):
        text_recipe.main(args)


def test_missing_text_column_lists_the_columns(text_recipe, bert_case, tmp_path):
    args = _recipe_args("text_classification", {"text_classification": bert_case}, tmp_path / "o")
    with pytest.raises(ColumnNotFoundError, match=r"'review'.*\['sentence', 'label'\]"):
        text_recipe.main([*args, "--text_column_name", "review"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--activation_mode", "relu"], "activation_mode='relu' is invalid"),
        (["--do_train", "false"], "--do_train false does not fit --activation_mode lambda_gelu"),
        (["--push_to_hub"], "--push_to_hub needs --hub_model_id"),
    ],
)
def test_bad_flags_fail_before_loading(text_recipe, bert_case, tmp_path, extra, message):
    args = _recipe_args("text_classification", {"text_classification": bert_case}, tmp_path / "o")
    with pytest.raises(ValueError, match=message):
        text_recipe.main([*args, *extra])
    assert not (tmp_path / "o").exists()


def test_image_recipe_without_model_but_with_data_asks_for_the_model(vit_case, tmp_path):
    recipe = _load_recipe("image_classification")
    with pytest.raises(ValueError, match="--model_name_or_path"):
        recipe.main(["--train_dir", str(vit_case["train"]), "--output_dir", str(tmp_path / "o")])


# -- launch configurations --------------------------------------------------------------------------------------------


def test_launch_configs_parse_and_fsdp2_wraps_the_transformer_layers(bert_case, vit_case, gpt2_case):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    from accelerate.utils.dataclasses import get_module_class_from_name

    configs = {path.stem: load_config_from_file(str(path)) for path in sorted(CONFIGS.glob("*.yaml"))}
    assert {"cpu_single", "cpu_ddp", "multi_gpu", "fsdp2_bert", "fsdp2_vit", "fsdp2_gpt2"} <= set(configs)
    assert configs["cpu_single"].distributed_type == DistributedType.NO and configs["cpu_single"].use_cpu
    assert configs["cpu_ddp"].distributed_type == DistributedType.MULTI_GPU and configs["cpu_ddp"].use_cpu
    assert configs["cpu_ddp"].num_processes == 2
    assert configs["multi_gpu"].distributed_type == DistributedType.MULTI_GPU and not configs["multi_gpu"].use_cpu
    models_by_family = {
        "bert": AutoModelForSequenceClassification.from_pretrained(bert_case["checkpoint"]),
        "vit": AutoModelForImageClassification.from_pretrained(vit_case["checkpoint"]),
        "gpt2": AutoModelForCausalLM.from_pretrained(gpt2_case["checkpoint"]),
    }
    for family, model in models_by_family.items():
        fsdp = configs[f"fsdp2_{family}"]
        assert fsdp.distributed_type == DistributedType.FSDP
        assert fsdp.fsdp_config["fsdp_version"] == 2
        assert fsdp.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        for name in fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert get_module_class_from_name(model, name) is not None, (family, name)


def test_the_fixtures_tokenizer_check_fails_on_a_vocabulary_without_the_words():
    """The check the fixtures make catches the transformers 5.25 ``vocab_file=`` trap: a vocabulary of the 5
    special tokens, every word ``[UNK]``."""
    broken = BertTokenizerFast(vocab={token: i for i, token in enumerate(BERT_SPECIAL_TOKENS)})
    with pytest.raises(AssertionError, match="tokenize alike"):
        assert_tokenizes_apart(broken, "the film was good", "the film was awful")
    with pytest.raises(AssertionError, match="unknown tokens"):
        assert_tokenizes_apart(wordpiece_tokenizer(["good", "awful"]), "the film was good", "the film was awful")

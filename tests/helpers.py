"""Importable test helpers: tiny random transformers models (offline), their inputs, subprocesses.

Test modules import from here (``from helpers import ...``); ``conftest.py`` keeps the fixtures only.

- ``tiny_bert_config(**overrides)``, ``tiny_vit_config(...)``, ``tiny_gpt2_config(...)``: configs small
  enough for a forward+backward in milliseconds (2 layers, hidden 32, intermediate 37 — an odd size,
  so a per-channel λ of the wrong length cannot broadcast by accident).
- ``TINY_MODELS``: one :class:`TinyCase` per architecture (BERT MLM, ViT classifier, GPT-2 LM) with a
  builder, matching inputs and what the GELU activations look like; ``make_text_inputs``,
  ``make_image_inputs``: inputs for them.
- ``wordpiece_tokenizer(words)``: a BERT tokenizer in which each word is its own token (built with ``vocab=``;
  transformers 5.25 ignores ``vocab_file=``); ``assert_tokenizes_apart(tokenizer, a, b)``: the check every
  fixture that builds a tokenizer makes (two different texts must not tokenize alike).
- ``offline_env(tmp_path=None, **extra)``: the environment for a subprocess (offline, private caches).
- ``run_python(code, *args, cwd, timeout)``: run code in a fresh interpreter (``sys.executable``),
  offline; a non-zero exit fails the test with the subprocess's output.
"""

from __future__ import annotations

import os

# Offline before transformers/huggingface_hub are imported anywhere in the test session.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _key, _value in OFFLINE.items():
    os.environ.setdefault(_key, _value)

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
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


BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def assert_tokenizes_apart(tokenizer, first: str, second: str) -> None:
    """Fail unless ``first`` and ``second`` (different texts) get different token ids and no unknown token.

    A tokenizer whose vocabulary did not load maps every word to its unknown token: the tests that use it
    would then train and evaluate on constant inputs and prove nothing.
    """
    ids = [tokenizer(text)["input_ids"] for text in (first, second)]
    assert ids[0] != ids[1], f"{first!r} and {second!r} tokenize alike ({ids[0]}): the vocabulary did not load"
    unknown = tokenizer.unk_token_id
    assert unknown is None or all(unknown not in row for row in ids), f"unknown tokens in {ids}: words are not words"


def wordpiece_tokenizer(words: Sequence[str], **kwargs) -> BertTokenizerFast:
    """A BERT WordPiece tokenizer: the special tokens, then ``words`` (duplicates dropped), each a token of its own.

    Built from ``vocab=``: under transformers 5.25, ``BertTokenizerFast(vocab_file=...)`` ignores the file and
    builds a 5-token vocabulary in which every word is ``[UNK]``. ``kwargs`` go to ``BertTokenizerFast``.
    """
    tokens = list(dict.fromkeys([*BERT_SPECIAL_TOKENS, *words]))
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, **kwargs)
    plain = [w for w in tokens if w not in BERT_SPECIAL_TOKENS]
    assert len(plain) > 1, f"give at least two words, got {plain}"
    assert_tokenizes_apart(tokenizer, " ".join(plain), " ".join(reversed(plain)))
    return tokenizer


def offline_env(tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a subprocess: offline, and with Hub/datasets caches under ``tmp_path`` if given."""
    env = dict(os.environ)
    env.update(OFFLINE)
    if tmp_path is not None:
        env.update(HF_HOME=str(tmp_path / "hf_home"), HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"))
    env.update(extra)
    return env


def run_python(
    code: str, *args: str, cwd: str | Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run dedented ``code`` in a fresh interpreter in ``cwd``, offline; fail the test on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=str(cwd),
        env=env or offline_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(f"subprocess exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def lambda_stack(*lams: float) -> torch.nn.Sequential:
    """A ``Sequential`` of one :class:`~hf_lambda_gelu.LambdaGELU` per λ (for schedule tests)."""
    from hf_lambda_gelu import LambdaGELU

    return torch.nn.Sequential(*[LambdaGELU(lambda_init=lam) for lam in lams])


def hardening_trajectory(cb, model, max_steps: int, stop: int | None = None) -> list[list[float]]:
    """λ of every layer after ``cb.update`` at each step 0..stop-1 (default: the whole run)."""
    out = []
    for step in range(stop or max_steps):
        cb.update(model, step, max_steps)
        out.append([m.lambda_.item() for m in model])
    return out


class GraphCounter:
    """A counting ``torch.compile`` backend plus a callback recording, at every step end, how many graphs
    were compiled so far (and the hardness profile): proves when a schedule change recompiles.

    Usage: ``model.compile(backend=counter.backend)``, pass ``counter.callback()`` to the Trainer, then
    read ``counter.per_step`` (a list of ``(graph count, hardness profile)``).
    """

    def __init__(self) -> None:
        torch._dynamo.reset()
        self.graphs: list = []
        self.per_step: list[tuple[int, dict[str, float]]] = []

    def backend(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    @property
    def counts(self) -> list[int]:
        return [count for count, _ in self.per_step]

    def callback(self):
        from transformers import TrainerCallback

        from hf_lambda_gelu import hardness_profile

        counter = self

        class _Count(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                counter.per_step.append((len(counter.graphs), hardness_profile(model)))

        return _Count()

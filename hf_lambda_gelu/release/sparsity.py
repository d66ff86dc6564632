"""Activation sparsity of a ReLU model, measured on real inputs the way the literature reports it.

For every ``nn.ReLU`` (the MLP activations of a release), over the tokens of the data (padding
positions, ``attention_mask == 0``, left out):

- **per-token sparsity**: the fraction of the layer's neurons that are exactly 0 for one token; its
  mean, standard deviation, minimum and maximum over tokens. This is what a per-token sparse kernel
  (batch-1 decoding, "skip the rows of the down-projection whose activation is 0") can skip.
- **aggregated sparsity**: the fraction of neurons that are 0 for *every* token of a batch, averaged
  over batches. This is what a batched kernel can skip; it falls quickly with the batch size, so the
  report records it.


Decisions behind it: docs/design.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from ..module_swap import FilterFn
from .card import set_card_section
from .export import check_relu_only
from .folder import CARD_FILENAME, add_release_files

__all__ = [
    "SPARSITY_JSON_FILENAME",
    "SPARSITY_PLOT_FILENAME",
    "LayerSparsity",
    "SparsityReport",
    "add_sparsity_to_release",
    "measure_sparsity",
    "save_sparsity",
    "save_sparsity_plot",
    "sparsity_markdown",
]

SPARSITY_JSON_FILENAME = "activation_sparsity.json"
SPARSITY_PLOT_FILENAME = "activation_sparsity.png"


@dataclass
class LayerSparsity:
    """Sparsity of one ReLU module (fractions in [0, 1])."""

    name: str
    neurons: int
    tokens: int
    token_mean: float
    token_std: float
    token_min: float
    token_max: float
    aggregated: float
    batches: int


@dataclass
class SparsityReport:
    """Per-layer sparsity over the data, in depth order, and how it was measured."""

    layers: list[LayerSparsity] = field(default_factory=list)
    tokens: int = 0
    batch_size: int | None = None
    data: str | None = None

    @property
    def mean_token_sparsity(self) -> float:
        """Per-token sparsity averaged over layers (each layer weighted by its neurons)."""
        total = sum(layer.neurons for layer in self.layers)
        return sum(layer.token_mean * layer.neurons for layer in self.layers) / total if total else 0.0

    @property
    def mean_aggregated_sparsity(self) -> float:
        """Aggregated (whole-batch) sparsity averaged over layers (weighted by neurons)."""
        total = sum(layer.neurons for layer in self.layers)
        return sum(layer.aggregated * layer.neurons for layer in self.layers) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "batch_size": self.batch_size,
            "data": self.data,
            "mean_token_sparsity": self.mean_token_sparsity,
            "mean_aggregated_sparsity": self.mean_aggregated_sparsity,
            "layers": [asdict(layer) for layer in self.layers],
        }

    def rows(self) -> list[list[str]]:
        """One row per layer: name, neurons, per-token mean ± std [min, max] (%), aggregated (%)."""
        return [
            [
                layer.name,
                str(layer.neurons),
                f"{100 * layer.token_mean:.1f} ± {100 * layer.token_std:.1f}",
                f"{100 * layer.token_min:.1f} – {100 * layer.token_max:.1f}",
                f"{100 * layer.aggregated:.1f}",
            ]
            for layer in self.layers
        ]

    HEADER = ("layer", "neurons", "zeros per token % (mean ± std)", "range over tokens %", "zero for whole batch %")

    def to_markdown(self) -> str:
        """The per-layer table as Markdown (for the model card)."""
        lines = ["| " + " | ".join(self.HEADER) + " |", "|---|" + "---:|" * (len(self.HEADER) - 1)]
        lines += [f"| `{row[0]}` | " + " | ".join(row[1:]) + " |" for row in self.rows()]
        return "\n".join(lines)


class _Accumulator:
    """Running per-token statistics and per-batch aggregated sparsity of one module."""

    def __init__(self) -> None:
        self.neurons = 0
        self.tokens = 0
        self.sum = self.sum_sq = 0.0
        self.min, self.max = math.inf, -math.inf
        self.aggregated: list[float] = []

    def add(self, output: torch.Tensor, mask: torch.Tensor | None) -> None:
        zero = output.detach() == 0
        if mask is not None and zero.dim() == 3 and zero.shape[:2] == mask.shape:
            zero, valid = zero.flatten(0, 1), mask.flatten()
            zero = zero[valid]
        else:
            zero = zero.reshape(-1, zero.shape[-1])
        if not len(zero):
            return
        per_token = zero.double().mean(-1)
        self.neurons = zero.shape[-1]
        self.tokens += len(per_token)
        self.sum += float(per_token.sum())
        self.sum_sq += float((per_token**2).sum())
        self.min, self.max = min(self.min, float(per_token.min())), max(self.max, float(per_token.max()))
        self.aggregated.append(float(zero.all(0).double().mean()))

    def result(self, name: str) -> LayerSparsity:
        n = max(self.tokens, 1)
        mean = self.sum / n
        variance = max(self.sum_sq / n - mean**2, 0.0) * (n / (n - 1) if n > 1 else 0.0)
        return LayerSparsity(
            name=name,
            neurons=self.neurons,
            tokens=self.tokens,
            token_mean=mean,
            token_std=math.sqrt(variance),
            token_min=self.min if self.tokens else 0.0,
            token_max=self.max if self.tokens else 0.0,
            aggregated=sum(self.aggregated) / len(self.aggregated) if self.aggregated else 0.0,
            batches=len(self.aggregated),
        )


@contextlib.contextmanager
def _hooks(modules: dict[str, nn.Module], accumulators: dict[str, _Accumulator], mask: dict) -> Iterator[None]:
    handles = [
        module.register_forward_hook(lambda _m, _i, out, acc=accumulators[name]: acc.add(out, mask["current"]))
        for name, module in modules.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def measure_sparsity(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    filter_fn: FilterFn | None = None,
    data: str | None = None,
) -> SparsityReport:
    """Measure the exact-zero sparsity of every ``nn.ReLU`` of ``model`` on ``batches`` (see the module docstring).

    Args:
        model: a ReLU model (a release); run in eval mode, without gradients.
        batches: model inputs (``model(**batch)``); an ``attention_mask`` marks padding to leave out.
            A ``labels`` entry is dropped.
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` chooses the ReLU modules (default: all).
        data: a description of the data, recorded in the report.

    Returns:
        The per-layer :class:`SparsityReport` (``batch_size`` is that of the first batch).

    Raises:
        ReluModelRequiredError: the model still has GELU / λ-GELU activations.
        InvalidInputError: no ReLU module (after ``filter_fn``), or no batch.

    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    ...                  hidden_act="relu")
    >>> batch = {"input_ids": torch.tensor([[2, 5, 7, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    >>> report = measure_sparsity(BertModel(cfg), [batch])
    >>> [layer.name for layer in report.layers]
    ['encoder.layer.0.intermediate.intermediate_act_fn', 'encoder.layer.1.intermediate.intermediate_act_fn']
    """
    check_relu_only(model, "measuring activation sparsity")
    modules = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.ReLU) and (filter_fn is None or filter_fn(module, name))
    }
    if not modules:
        raise InvalidInputError(
            f"{type(model).__name__} has no nn.ReLU module{' accepted by filter_fn' if filter_fn else ''}: nothing "
            "to measure. Pass a ReLU release (hf-lambda-gelu reluize SRC DST makes one)."
        )
    accumulators = {name: _Accumulator() for name in modules}
    mask: dict[str, torch.Tensor | None] = {"current": None}
    report = SparsityReport(data=data)
    was_training = model.training
    model.eval()
    try:
        with _hooks(modules, accumulators, mask), torch.inference_mode():
            for batch in batches:
                batch = {k: v for k, v in batch.items() if k != "labels"}
                attention = batch.get("attention_mask")
                mask["current"] = attention.bool() if attention is not None else None
                report.batch_size = report.batch_size or len(next(iter(batch.values())))
                model(**batch)
    finally:
        model.train(was_training)
    if report.batch_size is None:
        raise InvalidInputError("measure_sparsity got no batch; pass at least one batch of model inputs.")
    report.layers = [acc.result(name) for name, acc in accumulators.items()]
    report.tokens = report.layers[0].tokens
    return report


def save_sparsity_plot(report: SparsityReport, path: str | os.PathLike) -> Path:
    """Bar plot per layer: per-token zeros (mean, std as error bar, min–max as a line) and whole-batch zeros.

    Args:
        report: from :func:`measure_sparsity`.
        path: the PNG to write (folder created).

    >>> save_sparsity_plot(report, "activation_sparsity.png")  # doctest: +SKIP
    PosixPath('activation_sparsity.png')
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = report.layers
    x = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(layers) + 2), 3.6))
    try:
        means = [100 * layer.token_mean for layer in layers]
        left, right = [i - 0.2 for i in x], [i + 0.2 for i in x]
        stds = [100 * layer.token_std for layer in layers]
        ax.bar(left, means, 0.4, yerr=stds, capsize=3, label="zeros per token (mean ± std)")
        lows, highs = [100 * layer.token_min for layer in layers], [100 * layer.token_max for layer in layers]
        ax.vlines(left, lows, highs, colors="black", linewidth=0.6, label="min–max over tokens")
        aggregated = [100 * layer.aggregated for layer in layers]
        ax.bar(right, aggregated, 0.4, label=f"zero for a whole batch of {report.batch_size}")
        ax.set_xticks(x, [str(i) for i in x])
        ax.set_xlabel("ReLU layer (depth order)")
        ax.set_ylabel("exact zeros (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"Activation sparsity over {report.tokens} tokens")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def save_sparsity(report: SparsityReport, folder: str | os.PathLike) -> list[str]:
    """Write ``activation_sparsity.json`` and ``.png`` into ``folder``; returns their names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPARSITY_JSON_FILENAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    save_sparsity_plot(report, folder / SPARSITY_PLOT_FILENAME)
    return [SPARSITY_JSON_FILENAME, SPARSITY_PLOT_FILENAME]


def sparsity_markdown(report: SparsityReport) -> str:
    """The model card's "Activation sparsity" section body (table and plot)."""
    return "\n".join(
        [
            f"Exact zeros at the output of every ReLU, measured on {report.data or 'the data given'} "
            f"({report.tokens} tokens, padding left out, batches of {report.batch_size}): per token (what a "
            "per-token sparse kernel can skip) and for a whole batch (what a batched kernel can skip). Averaged "
            f"over layers: {100 * report.mean_token_sparsity:.1f} % per token, "
            f"{100 * report.mean_aggregated_sparsity:.1f} % for a whole batch. Data in `{SPARSITY_JSON_FILENAME}`.",
            "",
            f"![activation sparsity per layer]({SPARSITY_PLOT_FILENAME})",
            "",
            report.to_markdown(),
        ]
    )


def add_sparsity_to_release(report: SparsityReport, release_dir: str | os.PathLike) -> list[str]:
    """Write the sparsity JSON and plot into a release folder, its card section and its manifest.

    >>> add_sparsity_to_release(report, "release")  # doctest: +SKIP
    ['activation_sparsity.json', 'activation_sparsity.png']
    """
    release = Path(release_dir)
    names = save_sparsity(report, release)
    card = release / CARD_FILENAME
    if card.is_file():
        text = set_card_section(card.read_text(encoding="utf-8"), "### Activation sparsity", sparsity_markdown(report))
        card.write_text(text, encoding="utf-8")
    add_release_files(release, [*names, CARD_FILENAME] if card.is_file() else names)
    return names

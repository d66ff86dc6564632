"""How close a ReLU twin stays to the model it was made from, on held-out inputs (the relufy report).

Every model gets the per-layer hidden-state error; then, by kind: classifiers the top-1 agreement,
mean KL and (with labels) the accuracy of both; embedders the cosine between pooled embeddings and
the neighbour agreement (recall@k of the original's k nearest neighbours); causal LMs the perplexity
of both and the next-token agreement. The measurement never reads labels except for accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidSettingError

__all__ = ["KINDS", "NEIGHBOURS", "FidelityReport", "Pooling", "measure_fidelity", "model_kind"]

#: What relufy distils and reports, by the model's outputs.
KINDS = ("classifier", "embedder", "causal_lm")
#: k of the neighbour agreement (recall@k of the original's k nearest neighbours in the eval set).
NEIGHBOURS = 10
#: Said where the table has no "original" column.
NO_ORIGINAL_COLUMN = (
    "No column for the original: every measure compares the twin with it (the original against itself scores "
    "a cosine of 1, 100 %, an error of 0)."
)


def model_kind(model: nn.Module) -> str:
    """``"causal_lm"`` (a ``*ForCausalLM`` / ``*LMHeadModel``), ``"embedder"`` (a base model: no logits) or
    ``"classifier"`` (any other head with logits: sequence, token or image classification).

    >>> from transformers import BertConfig, BertModel
    >>> model_kind(BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)))
    'embedder'
    """
    name = type(model).__name__
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal_lm"
    if "For" not in name:
        return "embedder"
    return "classifier"


@dataclasses.dataclass(frozen=True)
class Pooling:
    """How a base encoder's token states become the embedding the user serves.

    Args:
        mode: ``"mean"`` (attention-masked mean), ``"cls"`` (first token) or ``"max"`` (masked max).
        source: where the mode came from (a sentence-transformers ``1_Pooling/config.json``, or the default).
    """

    mode: str = "mean"
    source: str = "default (no sentence-transformers pooling config)"

    def __post_init__(self) -> None:
        if self.mode not in ("mean", "cls", "max"):
            raise InvalidSettingError("pooling", self.mode, "use 'mean', 'cls' or 'max'.")

    def __call__(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, seq, dim) token states → (batch, dim) embeddings, in float32."""
        hidden = hidden.float()
        if self.mode == "cls":
            return hidden[:, 0]
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if attention_mask is None else attention_mask
        mask = mask.to(hidden.dtype).unsqueeze(-1)
        if self.mode == "max":
            return hidden.masked_fill(mask == 0, float("-inf")).amax(1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclasses.dataclass
class FidelityReport:
    """Fidelity of a ReLU twin to its original on held-out inputs (``to_dict()`` is ``fidelity_report.json``).

    Fields are None where they do not apply to the model's kind. Agreements are fractions in [0, 1].
    """

    kind: str
    examples: int
    hidden_state_rel_error: list[float]
    top1_agreement: float | None = None
    mean_kl: float | None = None
    accuracy_original: float | None = None
    accuracy_twin: float | None = None
    mean_cosine: float | None = None
    worst_cosine: float | None = None
    neighbour_agreement: float | None = None
    perplexity_original: float | None = None
    perplexity_twin: float | None = None
    next_token_agreement: float | None = None
    pooling: str | None = None
    #: Held-out inputs (texts, images) measured; ``examples`` counts predictions (per token for a causal LM).
    inputs: int | None = None
    #: How the twin was made (road, steps, data); set by :func:`hf_lambda_gelu.relufy`.
    training: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str, str]]:
        """(measure, original, twin-or-value) rows for tables and the card."""

        def pct(v: float | None) -> str:
            return "—" if v is None else f"{100 * v:.2f} %"

        rows = []
        if self.kind == "classifier":
            rows.append(("top-1 agreement with the original", "", pct(self.top1_agreement)))
            rows.append(("mean KL(original ‖ twin)", "", f"{self.mean_kl:.4g}"))
            if self.accuracy_original is not None:
                rows.append(("accuracy", pct(self.accuracy_original), pct(self.accuracy_twin)))
        elif self.kind == "embedder":
            rows.append(("mean cosine to the original's embedding", "", f"{self.mean_cosine:.4f}"))
            rows.append(("worst cosine", "", f"{self.worst_cosine:.4f}"))
            rows.append((f"neighbour agreement (recall@{NEIGHBOURS})", "", pct(self.neighbour_agreement)))
        else:
            rows.append(("perplexity", f"{self.perplexity_original:.4f}", f"{self.perplexity_twin:.4f}"))
            rows.append(("next-token agreement", "", pct(self.next_token_agreement)))
        worst = max(self.hidden_state_rel_error, default=float("nan"))
        rows.append(("worst layer's relative hidden-state error", "", f"{worst:.4f}"))
        return rows

    def _has_original_column(self) -> bool:
        """False when no measure has a value of the original's own (an embedder's are all comparisons to it)."""
        return any(orig for _, orig, _ in self.rows())

    def format_table(self) -> str:
        """A plain-text table (what the CLI prints); without the "original" column when it would be blank."""
        if not self._has_original_column():
            lines = [f"{'measure':<46} {'ReLU twin':>12}"]
            lines += [f"{name:<46} {twin:>12}" for name, _, twin in self.rows()]
            return "\n".join([*lines, NO_ORIGINAL_COLUMN])
        lines = [f"{'measure':<46} {'original':>10} {'ReLU twin':>12}"]
        lines += [f"{name:<46} {orig:>10} {twin:>12}" for name, orig, twin in self.rows()]
        return "\n".join(lines)

    def _measured_on(self) -> str:
        """How many held-out inputs, and predictions where they differ (a causal LM's next tokens)."""
        if self.inputs is None or self.inputs == self.examples:
            return f"{self.examples} held-out inputs"
        if self.kind == "causal_lm":
            return f"{self.inputs} held-out texts ({self.examples} next-token predictions)"
        return f"{self.inputs} held-out inputs ({self.examples} token predictions)"

    def markdown(self) -> str:
        """The card's "Fidelity to the original" section body."""
        head = f"Measured on {self._measured_on()} that neither model was trained on"
        lines = [head + (f" ({self.pooling} pooling)." if self.pooling else "."), ""]
        if self._has_original_column():
            lines += ["| | original (GELU) | ReLU twin |", "|---|---|---|"]
            lines += [f"| {name} | {orig or '—'} | {twin} |" for name, orig, twin in self.rows()]
        else:
            lines += ["| | ReLU twin |", "|---|---|"]
            lines += [f"| {name} | {twin} |" for name, _, twin in self.rows()]
            lines += ["", NO_ORIGINAL_COLUMN]
        errors = ", ".join(f"{e:.3g}" for e in self.hidden_state_rel_error)
        lines += ["", f"Relative hidden-state error ‖h_twin − h_orig‖/‖h_orig‖ per layer (embeddings first): {errors}."]
        return "\n".join(lines)


@torch.no_grad()
def _outputs(model: nn.Module, batch: Mapping[str, Any]) -> Any:
    device = _device(model)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in _model_inputs(batch).items()}
    return model(**inputs, output_hidden_states=True)


def _neighbour_agreement(original: torch.Tensor, twin: torch.Tensor, k: int) -> float:
    """Mean over items of |top-k neighbours under the original ∩ under the twin| / k (self excluded)."""

    def topk(emb: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(emb, dim=-1)
        sims = emb @ emb.T
        sims.fill_diagonal_(float("-inf"))
        return sims.topk(k, dim=-1).indices

    a, b = topk(original), topk(twin)
    hits = [len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b)]
    return sum(hits) / (k * len(hits))


def measure_fidelity(
    original: nn.Module,
    twin: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    *,
    kind: str | None = None,
    pooling: Pooling | None = None,
    neighbours: int = NEIGHBOURS,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> FidelityReport:
    """Compare ``twin`` with ``original`` on held-out ``batches`` (model inputs; ``labels`` only read for accuracy).

    Args:
        original: the model as given (GELU).
        twin: the ReLU model made from it.
        batches: collated batches of held-out inputs.
        kind: one of :data:`KINDS` (default: :func:`model_kind` of ``original``).
        pooling: the embedder's pooling (default mean).
        neighbours: k of the neighbour agreement; the eval set needs more than k inputs (0: not measured).
        progress: wraps the batch iterator (e.g. ``tqdm``).

    Raises:
        InvalidSettingError: an embedder's eval set has ``neighbours`` inputs or fewer.

    >>> import torch
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    >>> m = BertForSequenceClassification(cfg).eval()
    >>> r = measure_fidelity(m, m, [{"input_ids": torch.randint(5, 99, (4, 6))}])
    >>> r.top1_agreement, r.hidden_state_rel_error
    (1.0, [0.0, 0.0])
    """
    kind = kind or model_kind(original)
    if kind not in KINDS:
        raise InvalidSettingError("kind", kind, f"use one of {KINDS}.")
    pooling = pooling or Pooling()
    was = original.training, twin.training
    original.eval()
    twin.eval()
    sq_err: list[float] = []
    sq_ref: list[float] = []
    agree = count = 0
    kl_sum = 0.0
    correct = [0, 0]
    labelled = 0
    nll = [0.0, 0.0]
    emb_o: list[torch.Tensor] = []
    emb_t: list[torch.Tensor] = []
    inputs = 0
    for batch in progress(batches) if progress else batches:
        out_o, out_t = _outputs(original, batch), _outputs(twin, batch)
        inputs += len(out_o.hidden_states[0])
        mask = batch.get("attention_mask")
        for layer, (ho, ht) in enumerate(zip(out_o.hidden_states, out_t.hidden_states)):
            if layer == len(sq_err):
                sq_err.append(0.0)
                sq_ref.append(0.0)
            sq_err[layer] += float((ht.float() - ho.float()).pow(2).sum())
            sq_ref[layer] += float(ho.float().pow(2).sum())
        if kind == "embedder":
            emb_o.append(pooling(out_o.hidden_states[-1], mask).cpu())
            emb_t.append(pooling(out_t.hidden_states[-1], mask).cpu())
            continue
        lo, lt = out_o.logits.float().cpu(), out_t.logits.float().cpu()
        if kind == "causal_lm":
            ids = batch["input_ids"][:, 1:].cpu()
            keep = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask[:, 1:].cpu().bool()
            lo, lt = lo[:, :-1][keep], lt[:, :-1][keep]
            target = ids[keep]
            nll[0] += float(F.cross_entropy(lo, target, reduction="sum"))
            nll[1] += float(F.cross_entropy(lt, target, reduction="sum"))
        elif lo.dim() == 3:  # token classification: real tokens only
            keep = torch.ones(lo.shape[:2], dtype=torch.bool) if mask is None else mask.cpu().bool()
            lo, lt = lo[keep], lt[keep]
        po, pt = lo.argmax(-1), lt.argmax(-1)
        agree += int((po == pt).sum())
        count += po.numel()
        log_o, log_t = F.log_softmax(lo, -1), F.log_softmax(lt, -1)
        kl_sum += float((log_o.exp() * (log_o - log_t)).sum())
        labels = batch.get("labels")
        if kind == "classifier" and labels is not None and labels.dim() == 1:
            labels = labels.cpu()
            correct[0] += int((po == labels).sum())
            correct[1] += int((pt == labels).sum())
            labelled += labels.numel()
    original.train(was[0])
    twin.train(was[1])
    errors = [math.sqrt(e / r) if r > 0 else 0.0 for e, r in zip(sq_err, sq_ref)]
    if kind == "embedder":
        eo, et = torch.cat(emb_o), torch.cat(emb_t)
        if len(eo) <= neighbours:
            raise InvalidSettingError(
                "eval data",
                f"{len(eo)} inputs",
                f"the neighbour agreement needs more than {neighbours} held-out inputs; give a larger eval file.",
            )
        cos = F.cosine_similarity(eo, et, dim=-1)
        return FidelityReport(
            kind=kind,
            examples=len(eo),
            hidden_state_rel_error=errors,
            mean_cosine=float(cos.mean()),
            worst_cosine=float(cos.min()),
            neighbour_agreement=_neighbour_agreement(eo, et, neighbours) if neighbours else None,
            pooling=pooling.mode,
            inputs=inputs,
        )
    report = FidelityReport(
        kind=kind,
        examples=count,
        hidden_state_rel_error=errors,
        top1_agreement=agree / max(count, 1),
        mean_kl=kl_sum / max(count, 1),
        inputs=inputs,
    )
    if kind == "causal_lm":
        report.perplexity_original = math.exp(nll[0] / max(count, 1))
        report.perplexity_twin = math.exp(nll[1] / max(count, 1))
        report.next_token_agreement, report.top1_agreement = report.top1_agreement, None
    if labelled:
        report.accuracy_original = correct[0] / labelled
        report.accuracy_twin = correct[1] / labelled
    return report

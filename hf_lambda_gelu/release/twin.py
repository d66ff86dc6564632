"""The release of a relufy twin: the checked ReLU release folder, with a card that says how the twin was made
and how close it stays (``model_cards/relufy_twin.md``), the fidelity report, and a sentence-transformers
folder's own files when the original was one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from torch import nn

from ..config_fields import activation_fields
from ..fidelity import FidelityReport
from ..relufy_data import sentence_transformers_files
from .card import (  # fmt: skip
    CARD_TAGS,
    _architecture,
    _base_checkpoint,
    _base_text,
    _hub_id,
    _refit_summary,
    infer_auto_class,
    infer_pipeline_tag,
    load_template,
)
from .folder import CARD_FILENAME, _processor_auto_class, save_release

__all__ = ["FIDELITY_FILENAME", "RELUFY_TEMPLATE", "build_relufy_card", "save_twin_release"]

FIDELITY_FILENAME = "fidelity_report.json"
RELUFY_TEMPLATE = "relufy_twin.md"


def build_relufy_card(
    twin: nn.Module,
    report: FidelityReport,
    *,
    base_model: str | None = None,
    repo_id: str | None = None,
    processor_auto_class: str | None = None,
    sentence_transformers: bool = False,
) -> ModelCard:
    """The model card of a relufy twin: how it was made (road, steps, losses) and its fidelity table.

    Args:
        twin: the ReLU twin (its config is read).
        report: the :class:`~hf_lambda_gelu.fidelity.FidelityReport` of :func:`hf_lambda_gelu.relufy`.
        base_model: the original (Hub id or folder; a folder is named by the Hub id its config.json records as
            ``_name_or_path``, else by its own name, never its path).
        repo_id: where the release will live, for the loading snippet.
        processor_auto_class: ``"AutoTokenizer"`` / ``"AutoImageProcessor"`` if the release ships one.
        sentence_transformers: the release is also a sentence-transformers folder.

    >>> from transformers import BertConfig
    >>> from hf_lambda_gelu.fidelity import FidelityReport
    >>> report = FidelityReport("classifier", 10, [0.0], top1_agreement=1.0, mean_kl=0.0,
    ...     training={"road": "swap", "steps": 5, "train_examples": 40, "learning_rate": 1e-4, "hidden_alpha": 1.0})
    >>> card = build_relufy_card(BertConfig(hidden_act="relu"), report, base_model="me/bert-gelu")
    >>> "swapped from GELU to ReLU at once" in card.text, card.data.base_model
    (True, 'me/bert-gelu')
    """
    config = getattr(twin, "config", twin)
    how = report.training
    recorded = _recorded_hub_id(base_model)
    hub_id, name = _base_checkpoint(recorded or base_model)
    refit = _refit_summary(how.get("refit"))
    road = _road_text(how, refit)
    terms = [("hidden states (every layer, MSE)", how.get("hidden_alpha"))]
    terms += [
        ("logits (T²·KL)", how.get("logits_alpha")),
        ("pooled embedding (1 − cosine)", how.get("embedding_alpha")),
    ]
    losses = ", ".join(f"{label} ×{weight:g}" for label, weight in terms if weight)
    task = how.get("task_alpha") or 0.0
    labels = f"task loss on labels ×{task:g}" if task else "no labels were used"
    data = ModelCardData(
        base_model=hub_id,
        library_name="transformers",
        pipeline_tag=infer_pipeline_tag(config),
        tags=[*CARD_TAGS, "relufy", *(["sentence-transformers"] if sentence_transformers else [])],
    )
    model_type = getattr(config, "model_type", None) or None
    return ModelCard.from_template(
        data,
        template_str=load_template(RELUFY_TEMPLATE),
        title=f"{name.rstrip('/').rsplit('/', 1)[-1]}-relu" if name else "ReLU twin",
        base_model_text=_base_text(hub_id, name),
        base_model_source=" (the `_name_or_path` its model folder's config.json records)" if recorded else "",
        model_type_text=f"`{model_type}`" if model_type else "transformers",
        model_type=model_type,
        architecture=_architecture(config),
        activation_text=" and ".join(f"`{k}: {v}`" for k, v in activation_fields(config).items()) or "ReLU",
        road_text=road,
        refit=refit,
        refit_ridge=f"{how.get('refit_ridge', 0):g}",
        refit_seconds=f"{how.get('refit_seconds') or 0:.1f}",
        train_examples=how.get("train_examples", "?"),
        steps=how.get("steps", "?"),
        losses_text=losses or "none",
        learning_rate=f"{how.get('learning_rate', 0):g}",
        labels_text=labels,
        fidelity=report.markdown(),
        auto_class=infer_auto_class(config),
        processor_auto_class=processor_auto_class,
        processor_variable="tokenizer" if processor_auto_class == "AutoTokenizer" else "processor",
        repo_id_literal=json.dumps(repo_id) if repo_id else '"<repo_id or local folder>"',
        sentence_transformers=sentence_transformers,
    )


def _road_text(how: dict[str, Any], refit: dict | None) -> str:
    """How the copy became a ReLU twin, in words (the card's road sentence)."""
    if how.get("road") == "swap":
        return "swapped from GELU to ReLU at once, then distilled to the frozen original"
    if how.get("road") == "lambda":
        return (
            f"converted to λ-GELU (λ = 1: the original exactly), then distilled to the frozen original while λ "
            f"was hardened to λ* over the first {100 * (how.get('hardening_end') or 0):g} % of the steps"
        )
    text = (
        f"swapped from GELU to ReLU, then each MLP down-projection was refit by least squares on "
        f"{refit['examples'] if refit else '?'} unlabeled calibration inputs to reproduce the original's"
    )
    if not how.get("steps"):
        return text + ", with no gradient step"
    kept = how.get("kept")
    verdict = (
        "the refit alone was kept: distilling did not bring the twin closer to the original on a held-out tenth "
        "of the training inputs"
        if kept == "refit"
        else "the distilled twin was kept: it is closer to the original than the refit on a held-out tenth of the "
        "training inputs"
    )
    return text + f", then distilled to the frozen original ({verdict})"


def _recorded_hub_id(base_model: str | None) -> str | None:
    """The Hub id a local model folder's config.json records as ``_name_or_path`` (None: not a folder, no such
    record, or a local path).

    >>> _recorded_hub_id("me/bert-gelu") is None  # a Hub id is no folder
    True
    """
    config = Path(base_model) / "config.json" if base_model else None
    if config is None or not config.is_file():
        return None
    try:
        recorded = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return _hub_id(recorded) if isinstance(recorded, str) else None


def save_twin_release(
    twin: nn.Module,
    report: FidelityReport,
    output_dir: str | os.PathLike,
    *,
    processing_class: Any = None,
    base_model: str | None = None,
    sentence_transformers_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
    inputs: dict[str, Any] | None = None,
) -> Path:
    """Write a relufy twin as a checked release: :func:`hf_lambda_gelu.save_release` plus the fidelity report,
    the relufy card and, from ``sentence_transformers_dir``, the sentence-transformers files — all committed
    with the release (hashed in its manifest, uploaded by ``push``).

    Args:
        twin: the ReLU twin from :func:`hf_lambda_gelu.relufy`.
        report: its fidelity report.
        output_dir: the release folder (new, empty, or a previous release).
        processing_class: tokenizer / image processor to ship.
        base_model: the original (Hub id or folder).
        sentence_transformers_dir: the original's sentence-transformers folder (``modules.json``...), if it is one.
        repo_id: Hub repo for the card's loading snippet.
        overwrite: also write into a non-empty folder that is not a release.
        inputs: a real batch for the release gate.

    >>> save_twin_release(twin, report, "twin-release", processing_class=tokenizer, base_model="me/bert")  # doctest: +SKIP
    PosixPath('twin-release')
    """
    auto_class = _processor_auto_class(processing_class) if processing_class is not None else None

    def add_files(folder: Path) -> None:
        copied = sentence_transformers_files(sentence_transformers_dir, folder) if sentence_transformers_dir else []
        (folder / FIDELITY_FILENAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        card = build_relufy_card(
            twin, report, base_model=base_model, repo_id=repo_id, processor_auto_class=auto_class,
            sentence_transformers=bool(copied),
        )  # fmt: skip
        card.save(folder / CARD_FILENAME)

    return save_release(
        twin, output_dir, processing_class=processing_class, overwrite=overwrite, inputs=inputs, add_files=add_files
    )

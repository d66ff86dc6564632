"""The model card (README.md) of a ReLU-ized release, rendered from the packaged Jinja template.

The card says what the run did (λ pinned or learned, the hardening window, consolidation, distillation),
from the report's settings and road, so it stays true whatever the defaults are. The template ships as
``hf_lambda_gelu/model_cards/`` (the checkout's ``model_cards/`` when imported from a source tree); the
YAML header is written by ``huggingface_hub``. Why the header takes what it takes: docs/design.md.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import math
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers.models.auto import modeling_auto

from ..config_fields import activation_fields
from ..ops import RELU_DISTANCE_CONSTANT
from ..reluize import DEFAULT_RELU_TOLERANCE, ReluizeReport
from ..settings_effect import inert_settings, lambda_learned
from ..training_args import SETTING_LABELS
from ..window_logs import road_from_log_history

__all__ = [
    "CARD_TAGS",
    "TEMPLATE_NAME",
    "build_model_card",
    "infer_auto_class",
    "infer_pipeline_tag",
    "load_template",
    "resolve_target_lambda",
    "set_card_section",
]

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "lambda_gelu_relu.md"
#: Tags every release carries (plus the config's ``model_type``).
CARD_TAGS = ("relu", "lambda-gelu", "relu-ization")

# (Auto class, name of its architecture mapping in transformers.models.auto.modeling_auto, pipeline tag)
_AUTO_CLASSES = (
    ("AutoModelForSequenceClassification", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "text-classification"),
    ("AutoModelForTokenClassification", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", "token-classification"),
    ("AutoModelForQuestionAnswering", "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", "question-answering"),
    ("AutoModelForMultipleChoice", "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES", None),
    ("AutoModelForMaskedLM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "fill-mask"),
    ("AutoModelForCausalLM", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "text-generation"),
    ("AutoModelForSeq2SeqLM", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "text2text-generation"),
    ("AutoModelForImageClassification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "image-classification"),
    ("AutoModelForSemanticSegmentation", "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES", "image-segmentation"),
    ("AutoModelForObjectDetection", "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES", "object-detection"),
    ("AutoModelForAudioClassification", "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES", "audio-classification"),
    ("AutoModelForCTC", "MODEL_FOR_CTC_MAPPING_NAMES", "automatic-speech-recognition"),
    ("AutoModelForSpeechSeq2Seq", "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "automatic-speech-recognition"),
    ("AutoModelForPreTraining", "MODEL_FOR_PRETRAINING_MAPPING_NAMES", None),
    ("AutoModel", "MODEL_MAPPING_NAMES", None),
)

_VOLATILE_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch")
_DIFF_ROWS = (
    ("max_abs_logit_diff", "max \\|Δ logits\\|"),
    ("mean_abs_logit_diff", "mean \\|Δ logits\\|"),
    ("prediction_agreement", "prediction agreement"),
)


def load_template(name: str = TEMPLATE_NAME) -> str:
    """Text of a model-card template shipped with the package.

    Args:
        name: file name inside ``model_cards/`` (default: the ReLU release card).

    Raises:
        FileNotFoundError: no such template in the installed package nor in the source checkout.

    >>> load_template().startswith("---")
    True
    """
    packaged = importlib.resources.files("hf_lambda_gelu").joinpath("model_cards", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "model_cards" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"Model card template {name!r} not found in the installed package (hf_lambda_gelu/model_cards/) nor in "
        f"the source checkout ({checkout.parent}); reinstall hf-lambda-gelu."
    )


def _config_of(model_or_config: Any) -> Any:
    return getattr(model_or_config, "config", model_or_config)


def _architecture(config: Any) -> str | None:
    architectures = getattr(config, "architectures", None) or []
    return architectures[0] if architectures else None


def _auto_entry(config: Any) -> tuple[str, str | None] | None:
    architecture = _architecture(config)
    if architecture is None:
        return None
    for auto_class, mapping_name, task in _AUTO_CLASSES:
        for names in getattr(modeling_auto, mapping_name, {}).values():
            if architecture in (names if isinstance(names, (tuple, list)) else (names,)):
                return auto_class, task
    return None


def infer_auto_class(model_or_config: Any) -> str:
    """Name of the transformers Auto class that loads this architecture (``"AutoModel"`` if unknown).

    Args:
        model_or_config: a model or its config (``config.architectures`` is read).

    >>> from transformers import BertConfig
    >>> infer_auto_class(BertConfig(architectures=["BertForSequenceClassification"]))
    'AutoModelForSequenceClassification'
    """
    entry = _auto_entry(_config_of(model_or_config))
    return entry[0] if entry else "AutoModel"


def infer_pipeline_tag(model_or_config: Any) -> str | None:
    """The Hub pipeline tag for the config's architecture, or ``None`` (base models, unknown heads).

    Args:
        model_or_config: a model or its config (``config.architectures`` is read).

    >>> from transformers import BertConfig
    >>> infer_pipeline_tag(BertConfig(architectures=["BertForMaskedLM"]))
    'fill-mask'
    """
    entry = _auto_entry(_config_of(model_or_config))
    return entry[1] if entry else None


def resolve_target_lambda(report: dict | None = None, settings: dict | None = None) -> float | None:
    """The hardening target λ*: ``report["target_lambda"]``, else the explicit setting, else c/ε.

    Args:
        report: the ReLU-ization report (``reluization_report.json``), if any.
        settings: training settings (default: ``report["settings"]``); ``relu_target_lambda`` and
            ``relu_tolerance`` ε are read.

    >>> round(resolve_target_lambda(settings={"relu_tolerance": 1e-3}), 2)
    169.97
    """
    report = report or {}
    settings = {**(report.get("settings") or {}), **(settings or {})}
    for value in (report.get("target_lambda"), settings.get("relu_target_lambda")):
        if value is not None:
            return float(value)
    tolerance = settings.get("relu_tolerance")
    return RELU_DISTANCE_CONSTANT / float(tolerance) if tolerance else None


def _inline(text: Any) -> str:
    """One line of text (newlines and runs of spaces collapsed) for headings and sentences."""
    return " ".join(str(text).split())


def _cell(text: Any) -> str:
    return _inline(text).replace("|", "\\|")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return _cell(value)


def _fmt_share(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _fmt(value)


def _hub_id(value: str | None) -> str | None:
    """``value`` if it is a valid Hub repo id and not a local path, else ``None``."""
    if not value or os.path.exists(value):
        return None
    try:
        validate_repo_id(value)
    except HFValidationError:
        return None
    return value


def _base_checkpoint(value: str | None) -> tuple[str | None, str | None]:
    """(Hub id, name shown in the text) of the checkpoint training started from, without any local path."""
    if not value:
        return None, None
    hub_id = _hub_id(value)
    if hub_id:
        return hub_id, hub_id
    path = Path(value).expanduser()
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):  # a Hub cache snapshot: .../models--org--name/snapshots/REV/...
        if parts[index].startswith("models--") and parts[index + 1] == "snapshots":
            candidate = parts[index].removeprefix("models--").replace("--", "/")
            try:
                validate_repo_id(candidate)
            except HFValidationError:
                break
            return candidate, candidate
    return None, Path(os.path.abspath(path)).name or _inline(value)


def _base_text(hub_id: str | None, name: str | None) -> str:
    if hub_id:
        return f"[{hub_id}](https://huggingface.co/{hub_id})"
    return _cell(name) if name else "the base checkpoint (not recorded)"


def _linked(value: str, kind: str = "") -> str:
    hub_id = _hub_id(value)
    return f"[{hub_id}](https://huggingface.co/{kind}{hub_id})" if hub_id else _cell(value)


def _metric_key(keys: Collection[str], name: str) -> str | None:
    """The key under which metric ``name`` is stored (``name`` or Trainer-style ``eval_<name>``)."""
    for key in (name, f"eval_{name}"):
        if key in keys:
            return key
    return None


def _metric_rows(report: dict, metric_name: str | None, has_naive: bool) -> list[list[str]]:
    before = report.get("before_swap") or {}
    after = report.get("after_swap") or {}
    naive_after = (report.get("naive_swap") or {}).get("after_swap") or {}
    keys = [k for k in dict.fromkeys([*before, *after, *naive_after]) if not k.endswith(_VOLATILE_METRICS)]
    main = _metric_key(keys, metric_name) if metric_name else None
    if main is not None:
        keys = [main, *(k for k in keys if k != main)]
    rows = []
    for key in keys:
        label = key.removeprefix("eval_")
        row = [f"**{_cell(label)}**" if key == main else _cell(label), _fmt(before.get(key)), _fmt(after.get(key))]
        rows.append(row + [_fmt(naive_after.get(key))] if has_naive else row)
    return rows


def _diff_rows(report: dict, has_naive: bool) -> list[list[str]]:
    naive = report.get("naive_swap") or {}
    rows = []
    for key, label in _DIFF_ROWS:
        if key not in report and key not in naive:
            continue
        show = _fmt_share if key == "prediction_agreement" else _fmt
        row = [label, "—", show(report.get(key))]
        rows.append(row + [show(naive.get(key))] if has_naive else row)
    return rows


def _settings_rows(settings: dict, target_lambda: float | None) -> list[tuple[str, str]]:
    """The settings table; settings that did nothing in this run (λ's learning while it was pinned) are left out."""
    idle = set(inert_settings(settings))
    if lambda_learned(settings) is False:
        idle |= {"lambda_learning_rate", "hardness_pressure"}
    rows = [
        (_cell(SETTING_LABELS.get(key, key)), _fmt(value))
        for key in [*(k for k in SETTING_LABELS if k in settings), *(k for k in settings if k not in SETTING_LABELS)]
        if (value := settings[key]) is not None and key not in idle
    ]
    if target_lambda is not None:
        rows.append(("Target λ* of the hardening", f"{target_lambda:.4g}"))
        rows.append(("Swap bound c/λ* (per activation)", f"{RELU_DISTANCE_CONSTANT / target_lambda:.3g}"))
    return rows


def _share(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


def _steps(road: dict, index: int) -> str:
    window = road.get("hardening_steps")
    return f" (step {window[index]})" if window else ""


def _distillation_text(settings: dict) -> str | None:
    terms = []
    if settings.get("distill_alpha"):
        terms.append(f"feature distillation to the original model (α = {settings['distill_alpha']:g})")
    temperature = f"T = {settings.get('distill_temperature') or 2:g}"
    if settings.get("distill_logits_alpha"):
        terms.append(
            f"logit distillation to the original model (α = {settings['distill_logits_alpha']:g}, {temperature})"
        )
    if settings.get("self_distill_alpha"):
        terms.append(
            f"self-distillation to the hardening-start snapshot (α = {settings['self_distill_alpha']:g}, {temperature})"
        )
    if terms:
        return "training loss: the task loss plus " + " and ".join(terms)
    return "no distillation" if "distill_alpha" in settings else None


def _road_story(settings: dict, road: dict, target_lambda: float | None) -> tuple[str, str]:
    """(how λ got to the swap, for the intro; the method, for "How it was made") of this run, from its settings."""
    learned = lambda_learned(settings)
    target = f"λ* = {target_lambda:.4g}" if target_lambda else "a target λ*"
    swap = f"λ-GELU → ReLU (each activation changes by at most c/λ, c ≈ {RELU_DISTANCE_CONSTANT:.5f})"
    start, end = settings.get("hardening_start"), settings.get("hardening_end")
    if learned is None:
        return f"was hardened towards {target}", f"GELU → λ-GELU → hardening towards {target} → {swap}."
    init = f"{settings.get('lambda_init') or 1:g}"
    if learned:
        lam = (
            f"λ learned per layer (λ = 1 + softplus(s/τ), λ learning rate {settings['lambda_learning_rate']:g}) "
            f"for the first {_share(start)} of training{_steps(road, 0)}"
        )
        if settings.get("hardness_pressure"):
            lam += f", with hardness pressure β = {settings['hardness_pressure']:g}"
        intro = f"was learned per layer, then hardened deterministically towards {target}"
    elif start == 0:
        lam = f"λ pinned from the first step at λ = {init} (not learned)"
        intro = f"was pinned (not learned) and hardened deterministically from λ = {init} towards {target}"
    else:
        lam = f"λ held at λ = {init} (λ learning rate 0) for the first {_share(start)} of training{_steps(road, 0)}"
        intro = f"was held at λ = {init}, then hardened deterministically towards {target}"
    shape = settings.get("hardening_shape")
    by = f" by {_share(end)} of training{_steps(road, 1)}" if end is not None else ""
    parts = [
        f"GELU → λ-GELU; {lam}; hardened deterministically in log space{f' ({shape})' if shape else ''} to {target}"
        f"{by}, the weights training throughout"
    ]
    if end is not None and end < 1.0:  # (no hardening_end recorded: nothing is said about the steps after it)
        window, total = road.get("hardening_steps"), road.get("max_steps")
        rest = f"the remaining {total - window[1]} steps" if window and total else f"the last {_share(1.0 - end)}"
        parts.append(f"{rest} trained with exact ReLU forwards (consolidation)")
    elif end is not None:
        parts.append("λ reached λ* at the last step (no consolidation)")
    distillation = _distillation_text(settings)
    if distillation:
        parts.append(distillation)
    return intro, "; ".join(parts) + f"; finally {swap}."


def _eval_results(
    report: dict, metric_name: str | None, task: str | None, dataset_name: str, dataset_id: str | None
) -> list[EvalResult] | None:
    if not (report and metric_name and task):
        return None
    results = []
    for stage, label in (("before_swap", "before ReLU swap, λ-GELU"), ("after_swap", "after ReLU swap, this model")):
        metrics = report.get(stage) or {}
        key = _metric_key(metrics, metric_name)
        value = metrics.get(key) if key else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=dataset_id or "custom",
                    dataset_name=dataset_name,
                    metric_type=metric_name,
                    metric_value=float(value),
                    metric_name=f"{metric_name} ({label})",
                )
            )
    return results or None


def build_model_card(
    *,
    model: Any,
    base_model: str | None = None,
    report: ReluizeReport | None = None,
    profile: dict[str, float] | None = None,
    settings: dict | None = None,
    dataset_names: list[str] | None = None,
    eval_dataset: str | None = None,
    pipeline_tag: str | None = None,
    license: str | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    processor_auto_class: str | None = None,
    plot_filename: str | None = None,
    extra_text: str | None = None,
) -> ModelCard:
    """Render the model card of a ReLU-ized release (every section degrades gracefully when its input is missing).

    Args:
        model: the ReLU-ized model or its config (``model_type``, ``architectures`` and the activation
            fields are read).
        base_model: the checkpoint training started from. A Hub id goes into the ``base_model`` header
            field; anything else (a local path) is only named in the text.
        report: the swap's :class:`~hf_lambda_gelu.reluize.ReluizeReport` (every field optional):
            ``metric_name``, ``before_swap``/``after_swap`` metrics, ``max_abs_logit_diff``,
            ``mean_abs_logit_diff``, ``prediction_agreement``, ``naive_swap`` (or ``naive_swap_unavailable``:
            why not), ``lambdas``, the bound, ``target_lambda``, ``settings``, ``eval_dataset``.
        profile: layer → λ at the swap (default: ``report["lambdas"]``).
        settings: λ/hardening settings, merged over ``report["settings"]`` (``lambda_init``,
            ``lambda_temperature``, ``lambda_learning_rate``, ``hardening_start``, ``hardening_shape``,
            ``relu_tolerance``, ``relu_target_lambda``; other keys are listed verbatim).
        dataset_names: training data sets; Hub ids go into the ``datasets`` header field.
        eval_dataset: name of the evaluation set the report was measured on (default:
            ``report["eval_dataset"]``, else the first training data set).
        pipeline_tag: Hub task (default: inferred from ``config.architectures``).
        license: license id for the header (e.g. ``"apache-2.0"``).
        model_name: title and ``model-index`` name (default: derived from the base model).
        repo_id: where the release will live, for the loading snippet.
        processor_auto_class: ``"AutoTokenizer"``, ``"AutoImageProcessor"``... if the release ships one.
        plot_filename: relative path of the hardness-profile PNG inside the release, to embed.
        extra_text: free Markdown added as a "Notes" section.

    Returns:
        A ``huggingface_hub.ModelCard``; ``card.save(folder / "README.md")`` writes it.

    >>> from transformers import BertConfig
    >>> from hf_lambda_gelu import ReluizeReport
    >>> cfg = BertConfig(hidden_act="relu", architectures=["BertForSequenceClassification"])
    >>> card = build_model_card(model=cfg, base_model="bert-base-uncased", report=ReluizeReport(metric_name="accuracy"))
    >>> card.data.base_model, card.data.pipeline_tag
    ('bert-base-uncased', 'text-classification')
    """
    report = report.to_dict() if report is not None else {}
    config = _config_of(model)
    settings = {**(report.get("settings") or {}), **(settings or {})}
    profile = profile if profile is not None else report.get("lambdas") or {}
    learned = report.get("learned_lambdas") or {}
    if lambda_learned(settings) is False:
        learned = {}  # λ did not train: its value at hardening start is λ_init, not a learned profile
    model_type = getattr(config, "model_type", None) or None
    architecture = _architecture(config)
    pipeline_tag = pipeline_tag or infer_pipeline_tag(config)
    dataset_names = [str(name) for name in (dataset_names or [])]
    base_hub_id, base_name = _base_checkpoint(base_model)
    if base_model and not base_hub_id:
        logger.info("base_model %r is not a Hub id; the card names it %r in its text only.", base_model, base_name)
    title = _inline(model_name) if model_name else None
    if not title:
        base_short = _inline(base_name).rstrip("/").rsplit("/", 1)[-1] if base_name else None
        title = f"{base_short}-relu" if base_short else f"ReLU-ized {model_type or 'transformers'} model"
    eval_dataset = eval_dataset or report.get("eval_dataset") or (dataset_names[0] if dataset_names else None)
    metric_name = report.get("metric_name")
    has_naive = bool(report.get("naive_swap"))
    target_lambda = resolve_target_lambda(report, settings)
    road = report.get("road") or {}
    lambda_intro, method_text = _road_story(settings, road, target_lambda)
    max_error_bound = report.get("max_error_bound")
    if max_error_bound is None and profile:
        max_error_bound = RELU_DISTANCE_CONSTANT / min(profile.values())

    eval_results = _eval_results(
        report, metric_name, pipeline_tag, str(eval_dataset or "evaluation set"), _hub_id(eval_dataset)
    )
    card_data = ModelCardData(
        base_model=base_hub_id,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        datasets=[d for d in dataset_names if _hub_id(d)] or None,
        tags=[*CARD_TAGS, *([model_type] if model_type else [])],
        eval_results=eval_results,
        model_name=(model_name or title) if eval_results else None,  # model-index name, only with results
    )
    activations = [f"`{key}: {value}`" for key, value in activation_fields(config).items()]
    return ModelCard.from_template(
        card_data,
        template_str=load_template(),
        title=_cell(title),
        base_model_text=_base_text(base_hub_id, base_name),
        model_type_text=f"`{model_type}`" if model_type else "transformers",
        architecture=architecture,
        model_type=model_type,
        activation_text=" and ".join(activations) if activations else "ReLU",
        dataset_texts=[_linked(d, "datasets/") for d in dataset_names],
        settings_rows=_settings_rows(settings, target_lambda),
        lambda_intro=lambda_intro,
        method_text=method_text,
        has_learned=bool(learned),
        has_road=bool(road_from_log_history(road.get("log_history") or [])["lambda"]),
        profile_rows=[
            (name, *([_fmt(learned.get(name))] if learned else []), f"{lam:.4g}", f"{RELU_DISTANCE_CONSTANT / lam:.3g}")
            for name, lam in profile.items()
        ],
        plot_filename=plot_filename,
        eval_dataset_text=_linked(eval_dataset, "datasets/") if eval_dataset else "the evaluation set",
        has_naive=has_naive,
        naive_swap_unavailable=None if has_naive else report.get("naive_swap_unavailable"),
        metric_rows=_metric_rows(report, metric_name, has_naive),
        diff_rows=_diff_rows(report, has_naive),
        max_error_bound=f"{max_error_bound:.3g}" if max_error_bound else None,
        auto_class=infer_auto_class(config),
        processor_auto_class=processor_auto_class,
        processor_variable="tokenizer" if processor_auto_class == "AutoTokenizer" else "processor",
        repo_id_literal=json.dumps(repo_id) if repo_id else '"<repo_id or local folder>"',
        extra_text=extra_text.strip() if extra_text else None,
        naive_swap=bool(report.get("unhardened")),
        refit=_refit_summary(report.get("refit")),
        relu_tolerance=f"{settings.get('relu_tolerance') or DEFAULT_RELU_TOLERANCE:g}",
        gelu_remnants=sorted((report.get("gelu_remnants") or {}).items()),
        type_name=f"{architecture or 'model'} (top level)",
    )


def _refit_summary(refit: dict | None) -> dict | None:
    """The card's numbers of a refit swap (``report["refit"]``): layers, calibration inputs, mean errors."""
    if not refit or not refit.get("layers"):
        return None
    layers = refit["layers"]

    def mean(key: str) -> str:
        return f"{sum(layer[key] for layer in layers) / len(layers):.3g}"

    return {
        "layers": len(layers),
        "examples": refit["calibration_examples"],
        "before": mean("error_before"),
        "after": mean("error_after"),
    }


def _heading_level(line: str) -> int:
    """Level of a Markdown ATX heading line (``## x`` → 2), 0 for any other line."""
    marks = len(line) - len(line.lstrip("#"))
    return marks if 0 < marks <= 6 and line[marks : marks + 1] == " " else 0


def _section_end(lines: list[str], start: int, level: int) -> int:
    """Index of the first heading of level ≤ ``level`` after line ``start`` (fenced code skipped), or len(lines)."""
    fenced = False
    for index in range(start + 1, len(lines)):
        if lines[index].startswith("```"):
            fenced = not fenced
        elif not fenced and 0 < _heading_level(lines[index]) <= level:
            return index
    return len(lines)


def set_card_section(card_text: str, heading: str, body: str, *, parent: str = "## Deployment") -> str:
    """Return the card text with section ``heading`` set to ``body`` (replaced if present, else added).

    A new section goes at the end of ``parent`` (a card without ``parent`` gets it before
    ``## Limitations``, or at the end). Tools that add measured results to a release's card
    (ONNX export audit, activation sparsity) use it, so running them again replaces their section.

    Args:
        card_text: the card's Markdown (``README.md`` of a release, YAML header included).
        heading: the section's heading line, e.g. ``"### ONNX export"``.
        body: Markdown of the section, without its heading.
        parent: the heading the new section goes under.

    >>> text = set_card_section("# T\\n\\n## Deployment\\n\\nintro\\n", "### ONNX", "ok")
    >>> set_card_section(text, "### ONNX", "again").count("### ONNX"), "again" in text
    (1, False)
    """
    lines = card_text.rstrip("\n").split("\n")
    block = [heading, "", *body.strip("\n").split("\n"), ""]
    if heading in lines:
        start = lines.index(heading)
        end = _section_end(lines, start, _heading_level(heading))
        return "\n".join([*lines[:start], *block, *lines[end:]]).rstrip("\n") + "\n"
    if parent not in lines:
        at = lines.index("## Limitations") if "## Limitations" in lines else len(lines)
        lines[at:at] = [parent, ""]
    end = _section_end(lines, lines.index(parent), _heading_level(parent))
    if end and lines[end - 1] != "":
        block.insert(0, "")
    return "\n".join([*lines[:end], *block, *lines[end:]]).rstrip("\n") + "\n"

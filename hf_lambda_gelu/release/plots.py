"""The hardness profile (λ per layer) as a PNG plot and as JSON; with a log history, the road too.

The road panel shows λ over the training steps (the ``lambda/<layer>`` or ``lambda`` entries
``LambdaGELUTrainer`` logs), the training and eval loss, and the hardening window, so a user sees what
the run did and where it cost them. Drawn on a bare matplotlib ``Figure`` (Agg canvas, no pyplot).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import InvalidInputError, InvalidSettingError
from ..ops import RELU_DISTANCE_CONSTANT
from ..window_logs import ALL_LAYERS, road_from_log_history

__all__ = [
    "load_profile_json",
    "save_profile_json",
    "save_profile_plot",
    "short_layer_labels",
]

_MAX_LABEL_CHARS = 24
#: λ values (and λ*) within this factor of each other are drawn on a y range this factor wider on each side.
NARROW_RANGE = 2.0


def _check_profile(profile: dict[str, float]) -> dict[str, float]:
    if not profile:
        raise InvalidInputError(
            "The hardness profile is empty: take it with hf_lambda_gelu.hardness_profile(model) BEFORE "
            "hf_lambda_gelu.reluize(model) (reluize removes the λ-GELU modules)."
        )
    bad = {name: lam for name, lam in profile.items() if not (math.isfinite(lam) and lam >= 1.0)}
    if bad:
        raise InvalidInputError(f"Hardness profile values must be finite λ ≥ 1; got {bad}.")
    return {str(name): float(lam) for name, lam in profile.items()}


def short_layer_labels(names: list[str]) -> list[str]:
    """Short, unique labels for qualified module names (for plot axes).

    The dotted parts shared by every name at the start and at the end are dropped; a label still
    longer than 24 characters keeps its numeric parts and its last part. Whenever that would make
    two labels equal, the longer unique form is kept.

    Args:
        names: qualified module names, e.g. from :func:`hf_lambda_gelu.hardness_profile`.

    >>> short_layer_labels(["bert.encoder.layer.0.intermediate.act", "bert.encoder.layer.1.intermediate.act"])
    ['0', '1']
    """
    parts = [name.split(".") for name in names]
    if len(parts) < 2:
        return [p[-1] for p in parts]
    shortest = min(len(p) for p in parts)
    head = 0
    while head < shortest - 1 and len({p[head] for p in parts}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head - 1 and len({p[-1 - tail] for p in parts}) == 1:
        tail += 1
    stripped = [".".join(p[head : len(p) - tail]) for p in parts]
    if len(set(stripped)) < len(stripped):
        return list(names)
    compact = []
    for label in stripped:
        tokens = label.split(".")
        if len(label) > _MAX_LABEL_CHARS and len(tokens) > 1:
            label = ".".join([t for t in tokens[:-1] if t.isdigit()] + [tokens[-1]])
        compact.append(label)
    return compact if len(set(compact)) == len(compact) else stripped


def _draw_road(ax, road: dict, hardening_steps: tuple[int, int] | None, max_step: int | None) -> None:
    layers = [name for name in road["lambda"] if name != ALL_LAYERS]
    labels = ["λ " + label for label in short_layer_labels(layers)]
    if ALL_LAYERS in road["lambda"]:
        layers, labels = [ALL_LAYERS, *layers], [f"λ ({ALL_LAYERS})", *labels]
    for label, name in zip(labels, layers):
        steps, values = zip(*road["lambda"][name])
        ax.plot(steps, values, linewidth=1.2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("λ (log scale)")
    if hardening_steps is not None:
        start, end = hardening_steps
        ax.axvspan(start, end, color="tab:orange", alpha=0.15, label=f"hardening window (steps {start}–{end})")
        if max_step is not None and end < max_step:
            ax.axvline(end, color="tab:red", linestyle=":", label=f"λ* reached: ReLU forwards from step {end + 1}")
    handles, labels = ax.get_legend_handles_labels()
    series = [(k, v) for k, v in road["loss"].items() if v]
    if series:
        loss_ax = ax.twinx()
        for (name, points), color in zip(series, ("black", "tab:purple")):
            steps, values = zip(*points)
            marker = "." if name == "eval" else None
            loss_ax.plot(steps, values, color=color, linestyle="--", marker=marker, label=f"{name} loss")
        loss_ax.set_ylabel("loss")
        more_handles, more_labels = loss_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best", fontsize="x-small", ncol=2)
    ax.set_title("The road: λ per layer over training, with the loss")
    ax.grid(True, which="major", alpha=0.3)


def save_profile_plot(
    profile: dict[str, float],
    path: str | os.PathLike,
    *,
    target_lambda: float | None = None,
    title: str | None = None,
    learned: dict[str, float] | None = None,
    log_history: list[dict] | None = None,
    hardening_steps: tuple[int, int] | None = None,
) -> Path:
    """Plot λ per layer (depth order, log-scale y axis) with the target λ* as a horizontal line.

    With a ``log_history`` holding ``lambda/<layer>`` entries, a second panel shows the road: λ per
    layer over the training steps, the training/eval loss and the hardening window.

    Args:
        profile: layer name → λ, in depth order (``hf_lambda_gelu.hardness_profile(model)``, taken
            before ``reluize``).
        path: PNG file to write (parent folders are created).
        target_lambda: the hardening target λ*; drawn as a dashed line labelled with its bound c/λ*.
        title: figure title (default "λ-GELU hardness profile").
        learned: the profile learned before hardening (layer → λ), drawn as a second series; after
            hardening every layer sits at λ*, so this is the informative, depth-structured one.
        log_history: the Trainer's ``state.log_history`` (see :func:`road_from_log_history`).
        hardening_steps: (start_step, end_step) of the hardening window, shaded on the road panel;
            an end before the last logged step is marked as the start of the ReLU forwards.

    Returns:
        The path written.

    Raises:
        InvalidInputError: empty profile, or a λ that is not a finite number ≥ 1.

    >>> save_profile_plot({"layer.0.act": 120.0, "layer.1.act": 170.0}, "profile.png", target_lambda=170.0)  # doctest: +SKIP
    PosixPath('profile.png')
    """
    from matplotlib import ticker  # imported on use: matplotlib is only needed for plots
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    profile = _check_profile(profile)
    if target_lambda is not None and not (math.isfinite(target_lambda) and target_lambda >= 1.0):
        raise InvalidSettingError("target_lambda", target_lambda, "the target λ* must be a finite number ≥ 1.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = short_layer_labels(list(profile))
    values = list(profile.values())
    positions = list(range(len(values)))

    road = road_from_log_history(log_history or [])
    panels = 2 if road["lambda"] else 1
    width = max(5.0, min(14.0, 0.45 * len(values) + 3.0)) if panels == 1 else 8.0
    fig = Figure(figsize=(width, 3.8 * panels), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(panels, 1, 1)
    ax.plot(positions, values, marker="o", color="tab:blue", label="λ per layer (final)")
    shown = list(values)
    if learned:
        learned_values = [_check_profile(learned).get(name, math.nan) for name in profile]
        ax.plot(positions, learned_values, marker="s", color="tab:green", label="λ learned (before hardening)")
        shown += [v for v in learned_values if math.isfinite(v)]
    if target_lambda is not None:
        bound = RELU_DISTANCE_CONSTANT / target_lambda
        ax.axhline(
            target_lambda,
            color="tab:red",
            linestyle="--",
            label=f"target λ* = {target_lambda:.4g} (c/λ* = {bound:.2g})",
        )
    ax.set_yscale("log")
    plain = ticker.FuncFormatter(lambda value, _pos: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    shown += [target_lambda] if target_lambda is not None else []
    low, high = min(shown), max(shown)
    if high < NARROW_RANGE * low:  # (nearly) equal values, e.g. every layer at λ*: autoscale would zoom into
        ax.set_ylim(low / NARROW_RANGE, high * NARROW_RANGE)  # float32 rounding, with one label on every tick
    if high < 10 * low:  # less than a decade: label the minor ticks too
        ax.yaxis.set_minor_formatter(plain)
    slanted = max(map(len, labels)) > 4
    ax.set_xticks(positions, labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    ax.set_xlabel("layer (depth order)")
    ax.set_ylabel("λ (log scale)")
    ax.set_title(title or "λ-GELU hardness profile")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    if panels == 2:
        max_step = max(step for points in road["lambda"].values() for step, _ in points)
        _draw_road(fig.add_subplot(2, 1, 2), road, hardening_steps, max_step)
    fig.savefig(path, format="png")
    return path


def save_profile_json(
    profile: dict[str, float],
    path: str | os.PathLike,
    *,
    target_lambda: float | None = None,
    learned: dict[str, float] | None = None,
) -> Path:
    """Write the profile as JSON: ``{"lambdas": {layer: λ}, "error_bounds": {layer: c/λ}, "target_lambda": λ*}``.

    Args:
        profile: layer name → λ, in depth order.
        path: JSON file to write (parent folders are created).
        target_lambda: the hardening target λ*, if known (``null`` otherwise).
        learned: the profile learned before hardening, stored as ``learned_lambdas`` if given.

    Returns:
        The path written. :func:`load_profile_json` reads it back.

    >>> p = save_profile_json({"layer.0.act": 170.0}, "profile.json")  # doctest: +SKIP
    >>> load_profile_json(p)  # doctest: +SKIP
    {'layer.0.act': 170.0}
    """
    profile = _check_profile(profile)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "lambdas": profile,
        "error_bounds": {name: RELU_DISTANCE_CONSTANT / lam for name, lam in profile.items()},
        "relu_distance_constant": RELU_DISTANCE_CONSTANT,
        "target_lambda": target_lambda,
    }
    if learned:
        payload["learned_lambdas"] = _check_profile(learned)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_profile_json(path: str | os.PathLike) -> dict[str, float]:
    """Read the layer → λ profile written by :func:`save_profile_json` (order preserved).

    Args:
        path: the JSON file.

    Raises:
        InvalidInputError: the file is not a hardness profile (no ``"lambdas"`` mapping).

    >>> load_profile_json("hardness_profile.json")  # doctest: +SKIP
    {'bert.encoder.layer.0.intermediate.intermediate_act_fn': 170.0}
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    lambdas = data.get("lambdas") if isinstance(data, dict) else None
    if not isinstance(lambdas, dict):
        raise InvalidInputError(
            f"{str(path)!r} is not a hardness profile: expected a JSON object with a 'lambdas' mapping."
        )
    return {str(name): float(lam) for name, lam in lambdas.items()}

"""Hardness-profile plot (PNG) and JSON round trip."""

from __future__ import annotations

import json

import matplotlib
import pytest

from hf_lambda_gelu.ops import RELU_DISTANCE_CONSTANT
from hf_lambda_gelu.release.plots import (
    load_profile_json,
    save_profile_json,
    save_profile_plot,
    short_layer_labels,
)
from hf_lambda_gelu.window_logs import road_from_log_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BERT_PROFILE = {f"bert.encoder.layer.{i}.intermediate.intermediate_act_fn": 2.0 ** (i + 1) for i in range(6)}


def test_plot_is_a_png_and_leaves_the_matplotlib_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    path = save_profile_plot(BERT_PROFILE, tmp_path / "sub" / "profile.png", target_lambda=170.0, title="t")
    data = path.read_bytes()
    assert path == tmp_path / "sub" / "profile.png"
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert matplotlib.get_backend() == backend
    # without a target line, one layer only
    single = save_profile_plot({"act": 1.0}, tmp_path / "one.png")
    assert single.read_bytes().startswith(PNG_MAGIC)


def test_json_round_trips_in_depth_order(tmp_path):
    profile = dict(reversed(list(BERT_PROFILE.items())))  # order must be kept, not sorted
    path = save_profile_json(profile, tmp_path / "profile.json", target_lambda=170.0)
    assert load_profile_json(path) == profile
    assert list(load_profile_json(path)) == list(profile)
    data = json.loads(path.read_text())
    assert data["target_lambda"] == 170.0
    name = next(iter(profile))
    assert data["error_bounds"][name] == pytest.approx(RELU_DISTANCE_CONSTANT / profile[name])


def test_load_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"layers": []}')
    with pytest.raises(ValueError, match="not a hardness profile"):
        load_profile_json(path)


@pytest.mark.parametrize(
    ("profile", "target", "match"),
    [
        ({}, None, "empty"),
        ({"a": 0.5}, None, "λ ≥ 1"),
        ({"a": float("nan")}, None, "λ ≥ 1"),
        ({"a": 2.0}, 0.0, "target_lambda"),
    ],
)
def test_bad_profiles_are_rejected(tmp_path, profile, target, match):
    with pytest.raises(ValueError, match=match):
        save_profile_plot(profile, tmp_path / "p.png", target_lambda=target)
    assert not (tmp_path / "p.png").exists()


def test_short_labels():
    assert short_layer_labels(list(BERT_PROFILE)) == ["0", "1", "2", "3", "4", "5"]
    mixed = [*BERT_PROFILE, "cls.predictions.transform.transform_act_fn"]
    labels = short_layer_labels(mixed)
    assert labels[0] == "0.intermediate_act_fn" and labels[-1] == "transform_act_fn"
    assert len(set(labels)) == len(labels)
    vit = ["vit.layers.0.mlp.activation_fn", "vit.layers.1.mlp.activation_fn"]
    assert short_layer_labels(vit) == ["0", "1"]
    assert short_layer_labels(["a.b.act"]) == ["act"]
    # names whose stripped forms would collide keep their full names
    assert short_layer_labels(["x.a", "x.a"]) == ["x.a", "x.a"]


def _png_size(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_road_panel_from_a_log_history(tmp_path):
    layers = list(BERT_PROFILE)[:2]
    history = [
        {"step": s, "loss": 1.0 / s, **{f"lambda/{n}": (1.0 if s <= 4 else 170.0 ** ((s - 4) / 4)) for n in layers}}
        for s in range(1, 11)
    ] + [{"step": 5, "eval_loss": 0.5}, {"train_runtime": 1.0}]  # fmt: skip
    road = road_from_log_history(history)
    assert list(road["lambda"]) == layers and [s for s, _ in road["lambda"][layers[0]]] == list(range(1, 11))
    assert road["loss"]["eval"] == [(5, 0.5)] and len(road["loss"]["train"]) == 10
    profile = {n: 170.0 for n in layers}
    one = save_profile_plot(profile, tmp_path / "one.png", target_lambda=170.0)
    two = save_profile_plot(
        profile, tmp_path / "two.png", target_lambda=170.0, log_history=history, hardening_steps=(4, 8)
    )
    (_, h1), (_, h2) = _png_size(one), _png_size(two)
    assert h2 == 2 * h1  # the road panel below the profile
    # a history without λ entries draws the profile only
    assert _png_size(save_profile_plot(profile, tmp_path / "x.png", log_history=[{"step": 1, "loss": 1.0}]))[1] == h1


def test_every_layer_at_the_target_is_drawn_on_it_with_readable_ticks(tmp_path, monkeypatch):
    """Issue 25 item 21: λ = float32(c/ε) on every layer and λ* = c/ε made autoscale zoom into the rounding: every
    y tick read 169.97 and the dots sat hundreds of pixels below the λ* line."""
    import numpy as np
    from matplotlib.figure import Figure

    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k))[1])
    target = RELU_DISTANCE_CONSTANT / 1e-3
    lam = float(np.float32(target))
    assert lam != target
    save_profile_plot({f"layer.{i}.act": lam for i in range(6)}, tmp_path / "p.png", target_lambda=target)
    ax = figures[0].axes[0]
    figures[0].canvas.draw()
    low, high = ax.get_ylim()
    assert high / low >= 3  # a sensible range, not the float32 rounding
    shown = [
        t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)
        if t.get_text() and low <= t.get_position()[1] <= high
    ]  # fmt: skip
    assert len(shown) >= 2 and len(set(shown)) == len(shown), shown
    dot, line = (ax.transData.transform((0, y))[1] for y in (lam, target))
    assert abs(dot - line) < 1.0  # pixels: on the line

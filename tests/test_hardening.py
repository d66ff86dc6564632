import math

import pytest
import torch
from helpers import hardening_trajectory, lambda_stack

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, HardeningCallback, LambdaGELU, target_lambda_for_tolerance


def test_target_from_tolerance():
    assert target_lambda_for_tolerance(1e-3) == pytest.approx(RELU_DISTANCE_CONSTANT / 1e-3)
    assert 169 < target_lambda_for_tolerance(1e-3) < 171
    with pytest.raises(ValueError, match="relu_tolerance=0"):
        target_lambda_for_tolerance(0)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_schedule_reaches_target_exactly_along_log_path(shape):
    model = lambda_stack(1.5, 3.0)
    cb = HardeningCallback(hardening_start=0.5, hardening_shape=shape, relu_target_lambda=100.0, hardening_end=1.0)
    traj = hardening_trajectory(cb, model, 20)
    assert [t[0] for t in traj[:10]] == pytest.approx([1.5] * 10, rel=1e-6)  # not started: untouched
    assert all(m.is_pinned for m in model)
    assert traj[-1] == pytest.approx([100.0, 100.0], rel=1e-6)
    for layer, lam0 in ((0, 1.5), (1, 3.0)):
        logs = [math.log(t[layer]) for t in traj[10:]]
        assert all(b > a for a, b in zip(logs, logs[1:]))  # monotone
        w = [(v - math.log(lam0)) / (math.log(100.0) - math.log(lam0)) for v in logs]
        p = [(k + 1) / 10 for k in range(10)]  # step 11..20 of a 10-step hardening span
        expected = p if shape == "linear" else [0.5 * (1 - math.cos(math.pi * q)) for q in p]
        assert w == pytest.approx(expected, abs=1e-5)


def test_harder_learned_gate_is_not_softened():
    model = lambda_stack(500.0)
    traj = hardening_trajectory(HardeningCallback(hardening_start=0.0, relu_target_lambda=100.0), model, 5)
    assert traj[-1][0] == pytest.approx(500.0, rel=1e-5)


def test_standalone_loop_trains_weights_while_lambda_follows_schedule():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    act = LambdaGELU()
    model = torch.nn.Sequential(lin, act)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cb = HardeningCallback(hardening_start=0.5, relu_tolerance=1e-2)
    x, y = torch.randn(32, 8), torch.randn(32, 8)
    w0 = lin.weight.detach().clone()
    for step in range(10):
        cb.update(model, step, 10)
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        assert act.lambda_raw.grad is not None
        opt.step()
    cb.update(model, 9, 10)  # re-apply after the last optimizer step
    assert act.lambda_.item() == pytest.approx(RELU_DISTANCE_CONSTANT / 1e-2, rel=1e-5)
    assert not torch.equal(lin.weight, w0)


def test_per_layer_targets_scale_with_preactivation_rms():
    model = lambda_stack(1.0, 1.0)
    cb = HardeningCallback(hardening_start=0.5, relu_target_lambda=100.0, relu_target_per_layer=True)
    cb._attach_rms_hooks(model)
    model.train()
    x = torch.randn(4096)
    for step in range(10):
        cb.update(model, step, 10)
        model[0](x * 2.0)  # layer 0 sees RMS ≈ 2, layer 1 RMS ≈ 0.5
        model[1](x * 0.5)
    assert cb.targets["0"][0] == pytest.approx(50.0, rel=0.05)
    assert cb.targets["1"][0] == pytest.approx(200.0, rel=0.05)


def test_state_round_trip_gives_the_same_trajectory():
    model_a, model_b = lambda_stack(2.0, 4.0), lambda_stack(2.0, 4.0)
    cb = HardeningCallback(hardening_start=0.25, hardening_shape="cosine", relu_tolerance=2e-3)
    full = hardening_trajectory(cb, model_a, 12)
    cb_half = HardeningCallback(hardening_start=0.25, hardening_shape="cosine", relu_tolerance=2e-3)
    hardening_trajectory(cb_half, model_b, 12, stop=6)
    resumed = HardeningCallback(**cb_half.state()["args"])
    resumed.load_state(cb_half.state())
    rest = []
    for step in range(6, 12):
        resumed.update(model_b, step, 12)
        rest.append([m.lambda_.item() for m in model_b])
    assert rest == full[6:]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"hardening_start": 1.5}, "hardening_start=1.5"), ({"hardening_shape": "step"}, "hardening_shape='step'"),
     ({"relu_target_lambda": 0.5}, "relu_target_lambda=0.5")],
)  # fmt: skip
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardeningCallback(**kwargs)


def test_start_one_never_hardens():
    model = lambda_stack(1.5, 2.0)
    cb = HardeningCallback(hardening_start=1.0, relu_target_lambda=100.0)
    assert not cb.enabled
    traj = hardening_trajectory(cb, model, 10)
    assert not cb.started and traj == [traj[0]] * 10
    assert not any(m.is_pinned for m in model)

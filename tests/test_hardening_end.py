"""hardening_end: λ* before the end of training, then exact ReLU forwards (consolidation), resumable."""

import math

import pytest
import torch
from helpers import hardening_trajectory, lambda_stack

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, HardeningCallback, LambdaGELU


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_hardening_end_reaches_target_early_then_runs_exact_relu(shape):
    model = lambda_stack(1.5, 3.0)
    cb = HardeningCallback(hardening_start=0.25, hardening_end=0.5, hardening_shape=shape, relu_target_lambda=100.0)
    assert (cb.start_step_for(20), cb.end_step_for(20)) == (5, 10)
    flags = []
    traj = []
    for step in range(20):
        cb.update(model, step, 20)  # sets the forward of step `step + 1`
        traj.append([m.lambda_.item() for m in model])
        flags.append([m.relu_forward for m in model])
    assert [t[0] for t in traj[:5]] == pytest.approx([1.5] * 5, rel=1e-6)
    p = [(k + 1) / 5 for k in range(5)]  # forwards 6..10 of a 5-step window
    expected = p if shape == "linear" else [0.5 * (1 - math.cos(math.pi * q)) for q in p]
    w = [(math.log(t[1]) - math.log(3.0)) / (math.log(100.0) - math.log(3.0)) for t in traj[5:10]]
    assert w == pytest.approx(expected, abs=1e-5)
    assert traj[9] == pytest.approx([100.0, 100.0], rel=1e-6)  # λ* at step 10 = round(0.5·20)
    assert flags[:10] == [[False, False]] * 10 and flags[10:] == [[True, True]] * 10
    assert all(t == pytest.approx([100.0, 100.0], rel=1e-6) for t in traj[10:])


def test_relu_forward_is_exact_relu_and_keeps_lambda_in_the_graph():
    act = LambdaGELU(lambda_init=170.0, num_channels=5)
    act.relu_forward = True
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    act.double()
    y, y_ref = act(x), torch.nn.ReLU()(x_ref)
    assert torch.equal(y, y_ref)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(x.grad, x_ref.grad)
    assert act.lambda_raw.grad is not None and torch.equal(act.lambda_raw.grad, torch.zeros_like(act.lambda_raw))
    act.relu_forward = False  # back to λ-GELU: differs from ReLU by at most c/λ
    lam_gelu = act(x.detach())
    assert 0 < (lam_gelu - y.detach()).abs().max() <= RELU_DISTANCE_CONSTANT / 170.0 + 1e-12


def test_state_round_trip_mid_consolidation():
    full_model, half_model = lambda_stack(2.0), lambda_stack(2.0)
    cb = HardeningCallback(hardening_start=0.1, hardening_end=0.4, relu_tolerance=1e-3)
    full = hardening_trajectory(cb, full_model, 10)
    half = HardeningCallback(hardening_start=0.1, hardening_end=0.4, relu_tolerance=1e-3)
    hardening_trajectory(half, half_model, 10, stop=6)
    resumed = HardeningCallback(**half.state()["args"])
    resumed.load_state(half.state())
    fresh = lambda_stack(1.0)  # a reloaded checkpoint: λ restored by the schedule, relu_forward re-applied
    resumed.update(fresh, 6, 10)
    assert fresh[0].relu_forward and fresh[0].lambda_.item() == full[6][0]


@pytest.mark.parametrize("start, end", [(0.5, 0.5), (0.5, 0.25), (0.2, 1.5), (0.0, 0.0)])
def test_bad_hardening_end_raises(start, end):
    with pytest.raises(ValueError, match=f"hardening_end={end!r}"):
        HardeningCallback(hardening_start=start, hardening_end=end)

"""The numbers docs/method.md states, recomputed (float64 grids; no fitting, no tolerance games)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from hf_lambda_gelu import LambdaGELU, lambda_gelu
from hf_lambda_gelu.config import MIN_LAMBDA_OFFSET
from hf_lambda_gelu.hardening import target_lambda_for_tolerance
from hf_lambda_gelu.ops import RELU_DISTANCE_CONSTANT

METHOD = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
PHI = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


def _grid(lo: float, hi: float, n: int = 2_000_001) -> torch.Tensor:
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def _trapezoid(y: torch.Tensor, x: torch.Tensor) -> float:
    return torch.trapezoid(y, x).item()


def test_the_relu_distance_constant_and_its_maximizer():
    v = _grid(0.0, 5.0)
    g = v * PHI.cdf(-v)
    assert abs(g.max().item() - RELU_DISTANCE_CONSTANT) < 1e-10
    assert abs(v[g.argmax()].item() - 0.7518) < 1e-4
    assert "0.169971" in METHOD and "0.7518" in METHOD


def test_sup_and_integrated_distances_scale_as_stated():
    for lam in (1.0, 2.0, 10.0, 170.0):
        x = _grid(-40 / lam, 40 / lam)
        err = (x * PHI.cdf(lam * x) - torch.relu(x)).abs()
        assert math.isclose(err.max().item(), RELU_DISTANCE_CONSTANT / lam, rel_tol=1e-8)
        assert math.isclose(_trapezoid(err, x), 1 / (2 * lam**2), rel_tol=1e-6)
        gate = (PHI.cdf(lam * x) - (x > 0).double()).abs()
        assert math.isclose(_trapezoid(gate, x), 2 / (lam * math.sqrt(2 * math.pi)), rel_tol=1e-4)


def test_target_for_the_default_tolerance_and_its_gate_distance():
    lam = target_lambda_for_tolerance(1e-3)
    assert f"{lam:.2f}" == "169.97" and "λ\\* ≈ 169.97" in METHOD
    # the package's activation at λ*: its gate f/x = Φ(λ*x) is 0.798/λ* ≈ 0.0047 from the hard step in L1
    x = _grid(-0.2, 0.2)
    x = x[x != 0]
    gate = lambda_gelu(x, lam) / x
    assert math.isclose(_trapezoid((gate - (x > 0).double()).abs(), x), 0.0047, abs_tol=5e-5)
    assert "0.798/169.97 ≈ 0.0047" in METHOD


def test_tanh_form_constant_and_the_gap_between_the_forms():
    u = _grid(-20.0, 20.0)
    gap = (torch.nn.functional.gelu(u) - torch.nn.functional.gelu(u, approximate="tanh")).abs().max().item()
    assert math.isclose(gap, 4.7e-4, abs_tol=0.05e-4)
    v = _grid(0.0, 5.0)
    c_tanh = (v - torch.nn.functional.gelu(v, approximate="tanh")).max().item()  # v·(1 − Φ_tanh(v))
    assert math.isclose(c_tanh, 0.17004, abs_tol=1e-5)


def test_exact_start_at_lambda_one_in_float32_with_a_nonzero_gradient():
    assert MIN_LAMBDA_OFFSET == 1e-8 and "1 + 1e-8 (`MIN_LAMBDA_OFFSET`)" in METHOD
    for offset, slope in ((0.0, 1e-7), (3e-5, 3e-4)):  # λ = 1 is stored as 1 + 1e-8: slope 1e-8/τ = 1e-7
        act = LambdaGELU(lambda_init=1.0 + offset, lambda_temperature=0.1)
        lam = act.lambda_
        if offset == 0.0:
            assert lam.item() == 1.0  # exactly GELU in float32
        lam.sum().backward()
        assert math.isclose(act.lambda_raw.grad.item(), slope, rel_tol=1e-3)  # dλ/ds = sigmoid(s/τ)/τ > 0

"""The LambdaGELU module (hf_lambda_gelu/activation.py): parameterization, settings, pinning, compile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

from hf_lambda_gelu import LambdaGELU, LambdaGELUConfig, install_lambda_update, lambda_gelu, lambda_param_groups
from hf_lambda_gelu.activation import lambda_to_raw, raw_to_lambda
from hf_lambda_gelu.config import MIN_LAMBDA_OFFSET


def _reference_raw_grad(m: LambdaGELU, x: torch.Tensor) -> torch.Tensor:
    """d/ds of sum(f(x; λ(s))²) by autograd through x·Φ(λx) written out (erf form; no custom op)."""
    s = m.lambda_raw.detach().clone().requires_grad_()
    lam = raw_to_lambda(s, m.lambda_temperature)
    x = x.detach()
    (x * 0.5 * (1 + torch.erf(lam * x / math.sqrt(2)))).pow(2).sum().backward()
    return s.grad


@pytest.mark.parametrize(("num_channels", "shape"), [(None, (1,)), (1, (1,)), (7, (7,))])
def test_lambda_raw_shape_is_never_zero_dim(num_channels, shape):
    m = LambdaGELU(num_channels=num_channels)
    assert isinstance(m.lambda_raw, torch.nn.Parameter)
    assert m.lambda_raw.shape == shape and m.lambda_raw.dim() == 1
    assert m.lambda_.shape == shape
    assert [n for n, _ in m.named_parameters()] == ["lambda_raw"]
    assert "pinned" not in m.state_dict(), "pin state is runtime state, not checkpoint content"
    m.configure(LambdaGELUConfig(lambda_init=2.0, lambda_temperature=0.1), num_channels=5)
    assert m.lambda_raw.shape == (5,) and m.pinned.shape == (5,)
    torch.testing.assert_close(m.lambda_, torch.full((5,), 2.0))


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0, 10.0])
def test_lambda_is_at_least_one_for_any_raw_value(temperature):
    raw = torch.tensor([-1e30, -1e6, -1e3, -50.0, -1.0, 0.0, 1.0, 50.0, 1e3, 1e6, 1e30])
    m = LambdaGELU(lambda_temperature=temperature, num_channels=raw.numel())
    with torch.no_grad():
        m.lambda_raw.copy_(raw)
    lam = m.lambda_
    assert torch.isfinite(lam[raw.abs() < 1e30]).all()
    assert (lam >= 1.0).all(), lam
    assert (lam[1:] >= lam[:-1]).all(), "λ must be monotone in the raw parameter"
    y = m(torch.randn(3, raw.numel()))
    assert torch.isfinite(y[:, raw.abs() < 1e30]).all()


@pytest.mark.parametrize(("approximate", "ref"), [("none", "none"), ("tanh", "tanh")])
def test_default_module_reproduces_gelu(approximate, ref):
    m = LambdaGELU(approximate=approximate)
    x = torch.linspace(-12, 12, 20001).reshape(-1, 1)
    # the default λ (the floor 1 + MIN_LAMBDA_OFFSET) is exactly 1.0 in float32: bitwise GELU
    assert m.lambda_.item() == 1.0
    assert torch.equal(m(x), F.gelu(x, approximate=ref))
    for dtype in (torch.float16, torch.bfloat16):  # half inputs are computed in float32
        half = LambdaGELU(approximate=approximate).to(dtype)
        assert half.lambda_.item() == 1.0
        assert torch.equal(half(x.to(dtype)), F.gelu(x.to(dtype).float(), approximate=ref).to(dtype))
    # ... and still learnable: a gradient, and the λ-space update moves it off 1 in one step
    x.requires_grad_()
    ((m(x) - torch.relu(x)) ** 2).mean().backward()
    assert m.lambda_raw.grad is not None and m.lambda_raw.grad.abs().item() > 0
    m.lambda_raw.grad = None
    opt = torch.optim.AdamW(
        lambda_param_groups(torch.nn.Sequential(m), lr=0.0, weight_decay=0.0, lambda_learning_rate=0.05)
    )
    install_lambda_update(opt, m)
    ((m(x) - torch.relu(x)) ** 2).mean().backward()
    opt.step()
    assert m.lambda_.item() == pytest.approx(1.05, abs=1e-3)


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_lambda_to_raw_round_trip_is_stable(temperature):
    lam = torch.tensor([1.0 + 1e-6, 1.0 + 1e-4, 1.001, 1.5, 3.0, 170.0, 1e3, 1e4, 1e5, 1e7], dtype=torch.float64)
    raw = lambda_to_raw(lam, temperature)
    assert raw.dtype == torch.float64 and torch.isfinite(raw).all()
    torch.testing.assert_close(raw_to_lambda(raw, temperature), lam, rtol=1e-9, atol=0)
    # the naive inverse log(expm1(y)) overflows here; the stable one must not
    assert not torch.isfinite(torch.log(torch.expm1(torch.tensor(1e5 - 1.0, dtype=torch.float64))))
    # and through the module, in float32
    for value in (1.5, 170.0, 1e4, 1e5):
        m = LambdaGELU(lambda_init=value, lambda_temperature=temperature)
        assert torch.isfinite(m.lambda_raw).all()
        assert m.lambda_.item() == pytest.approx(value, rel=1e-6)


def test_lambda_to_raw_floors_at_min_offset():
    floor = lambda_to_raw(1.0 + MIN_LAMBDA_OFFSET, 0.1)
    for lam in (1.0, 1.0 + 1e-9, 0.5, -3.0):
        assert lambda_to_raw(lam, 0.1).item() == floor.item()
    assert raw_to_lambda(floor, 0.1).item() == pytest.approx(1.0 + MIN_LAMBDA_OFFSET, rel=1e-12)
    # dλ/ds = sigmoid(s/τ)/τ is still positive at the floor
    s = floor.clone().requires_grad_()
    raw_to_lambda(s, 0.1).backward()
    assert s.grad.item() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lambda_init": 0.5}, "lambda_init=0.5"),
        ({"lambda_init": 0.0}, "lambda_init=0.0"),
        ({"lambda_init": math.nan}, "lambda_init=nan"),
        ({"lambda_temperature": 0.0}, "lambda_temperature=0.0"),
        ({"lambda_temperature": -0.1}, r"lambda_temperature=-0.1"),
        ({"num_channels": 0}, "num_channels=0"),
        ({"num_channels": -4}, "num_channels=-4"),
        ({"approximate": "erf"}, "'erf'"),
    ],
)
def test_invalid_settings_raise_value_error_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LambdaGELU(**kwargs)


def test_configure_rejects_bad_values():
    m = LambdaGELU()
    with pytest.raises(ValueError, match="lambda_init=0.9"):
        m.configure(LambdaGELUConfig(lambda_init=0.9), num_channels=None)


@pytest.mark.parametrize("num_channels", [None, 4])
def test_pin_freezes_lambda_with_an_exact_zero_gradient(num_channels):
    m = LambdaGELU(lambda_init=2.0, num_channels=num_channels)
    storage = m.lambda_raw.data_ptr()
    m.pin(5.0)
    assert m.is_pinned
    torch.testing.assert_close(m.lambda_, torch.full_like(m.lambda_, 5.0))
    x = torch.randn(6, 4, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, lambda_gelu(x.detach(), 5.0))
    y.pow(2).sum().backward()
    assert m.lambda_raw.grad is not None, "a pinned λ must stay in the graph (DDP needs a gradient)"
    assert torch.equal(m.lambda_raw.grad, torch.zeros_like(m.lambda_raw))
    x5 = x.detach().clone().requires_grad_()
    lambda_gelu(x5, 5.0).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x5.grad)  # the input gradient is the one at λ = 5
    assert m.lambda_raw.data_ptr() == storage, "set_lambda must write in place (optimizer/DDP hold the tensor)"

    m.pin()  # pin without a value keeps the current λ
    torch.testing.assert_close(m.lambda_, torch.full_like(m.lambda_, 5.0))

    m.unpin()
    assert not m.is_pinned
    m.lambda_raw.grad = None
    m(x).pow(2).sum().backward()
    torch.testing.assert_close(m.lambda_raw.grad, _reference_raw_grad(m, x))  # learning again


def test_pin_with_per_channel_tensor_value():
    m = LambdaGELU(num_channels=3)
    value = torch.tensor([1.5, 20.0, 300.0])
    m.pin(value)
    torch.testing.assert_close(m.lambda_, value)


def test_reset_parameters_restores_init_and_unpins():
    m = LambdaGELU(lambda_init=3.0)
    m.pin(50.0)
    m.reset_parameters()
    assert not m.is_pinned
    assert m.lambda_.item() == pytest.approx(3.0, rel=1e-6)


def test_pin_state_and_value_changes_do_not_recompile():
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    m = LambdaGELU(lambda_init=2.0)
    compiled = torch.compile(m, backend=counter, fullgraph=True)
    x = torch.randn(8, 16, requires_grad=True)

    def step():
        m.lambda_raw.grad = None
        y = compiled(x)
        torch.testing.assert_close(y, lambda_gelu(x.detach(), m.lambda_.detach()))
        y.pow(2).sum().backward()
        return m.lambda_raw.grad.clone()

    torch.testing.assert_close(step(), _reference_raw_grad(m, x))
    m.pin(3.0)
    assert torch.equal(step(), torch.zeros(1))
    m.pin(7.0)
    assert torch.equal(step(), torch.zeros(1))
    torch.testing.assert_close(m.lambda_, torch.tensor([7.0]))
    m.unpin()
    torch.testing.assert_close(step(), _reference_raw_grad(m, x))
    m.set_lambda(1.25)
    torch.testing.assert_close(step(), _reference_raw_grad(m, x))
    assert counter.frame_count == 1, f"recompiled: {counter.frame_count} graphs"


def test_extra_repr_shows_lambda_and_form():
    assert "lambda=2.5" in repr(LambdaGELU(lambda_init=2.5))
    assert "approximate='none'" in repr(LambdaGELU())
    text = repr(LambdaGELU(lambda_init=3.0, approximate="tanh", lambda_temperature=0.5))
    assert "lambda=3" in text and "approximate='tanh'" in text and "temperature=0.5" in text
    per_channel = LambdaGELU(num_channels=3)
    per_channel.set_lambda(torch.tensor([1.5, 2.0, 9.0]))
    assert "[1.5..9]" in repr(per_channel)
    per_channel.pin()
    assert "pinned" in repr(per_channel)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_half_precision_module_with_extreme_lambda(dtype, approximate):
    m = LambdaGELU(lambda_init=1e4, approximate=approximate).to(dtype)
    x = torch.tensor([-1e4, -30.0, -1e-3, 0.0, 1e-3, 30.0, 1e4], dtype=dtype, requires_grad=True)
    y = m(x)
    y.sum().backward()
    for name, t in {"y": y, "dx": x.grad, "dlambda_raw": m.lambda_raw.grad}.items():
        assert t is not None and torch.isfinite(t).all(), name
    torch.testing.assert_close(y.float(), F.relu(x.detach().float()), atol=1e-3, rtol=1e-2)

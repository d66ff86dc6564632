"""The λ-GELU op (hf_lambda_gelu/ops.py): values, gradients, compile path, half precision, memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend
from transformers.activations import ACT2FN

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, lambda_gelu

FORMS = ("none", "tanh")
_K = math.sqrt(2.0 / math.pi)


def naive(x: torch.Tensor, lam: torch.Tensor | float, approximate: str = "none") -> torch.Tensor:
    """The textbook formulas with plain torch ops (autograd gives their gradients)."""
    z = x * lam
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(z / math.sqrt(2.0)))  # x·Φ(λx)
    return 0.5 * x * (1.0 + torch.tanh(_K * (z + 0.044715 * z**3)))


def wide_inputs(dtype=torch.float32, n: int = 4001) -> torch.Tensor:
    """A dense grid over [-10, 10] plus exact zeros and tiny values."""
    grid = torch.linspace(-10.0, 10.0, n, dtype=torch.float64)
    extra = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 1e-3, -1e-3], dtype=torch.float64)
    return torch.cat([grid, extra]).to(dtype)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lambda_one_is_erf_gelu(dtype):
    x = wide_inputs(dtype)
    torch.testing.assert_close(lambda_gelu(x, 1.0, "none"), F.gelu(x))
    torch.testing.assert_close(lambda_gelu(x, torch.ones(1, dtype=dtype), "none"), F.gelu(x))
    torch.testing.assert_close(lambda_gelu(x, 1.0), ACT2FN["gelu"](x))


def test_lambda_one_is_tanh_gelu_and_transformers_gelu_new():
    x = wide_inputs(torch.float32)
    y = lambda_gelu(x, 1.0, "tanh")
    torch.testing.assert_close(y, F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(y, ACT2FN["gelu_pytorch_tanh"](x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(y, ACT2FN["gelu_new"](x), atol=1e-6, rtol=1e-6)
    # and the two forms really differ (so the checks above can tell them apart)
    assert (lambda_gelu(x, 1.0, "none") - y).abs().max() > 1e-4


@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("lam", [1.0, 1.5, 3.0, 10.0, 170.0, 1e4])
def test_matches_naive_formula(lam, approximate):
    x = wide_inputs(torch.float64) / math.sqrt(lam)  # keep λx in the interesting range for every λ
    expected = naive(x, lam, approximate)
    torch.testing.assert_close(lambda_gelu(x, lam, approximate), expected, rtol=1e-12, atol=1e-14)
    # identity used by the op: x·Φ(λx) = GELU(λx)/λ
    if approximate == "none":
        torch.testing.assert_close(expected, 0.5 * x * torch.erfc(-lam * x / math.sqrt(2.0)), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("approximate", FORMS)
def test_per_channel_lambda_matches_naive(approximate):
    x = torch.randn(3, 5, 6, dtype=torch.float64) * 3
    lam = torch.tensor([1.0, 1.1, 2.0, 5.0, 50.0, 1e3], dtype=torch.float64)
    torch.testing.assert_close(lambda_gelu(x, lam, approximate), naive(x, lam, approximate))


def test_lambda_tends_to_relu():
    x = wide_inputs(torch.float64)
    err = [(lambda_gelu(x, lam) - F.relu(x)).abs().max().item() for lam in (1.0, 10.0, 100.0, 1000.0)]
    assert err == sorted(err, reverse=True) and err[-1] < 2e-4


def test_relu_distance_constant():
    v = torch.linspace(0.0, 3.0, 3_000_001, dtype=torch.float64)
    vals = v * torch.special.ndtr(-v)  # c = max_v v·Φ(−v)
    assert vals.max().item() == pytest.approx(RELU_DISTANCE_CONSTANT, abs=1e-10)
    assert v[vals.argmax()].item() == pytest.approx(0.752, abs=1e-3)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("lam", [1.0, 3.0, 50.0])
@pytest.mark.parametrize("channels", [None, 5], ids=["scalar", "per_channel"])
def test_gradcheck(approximate, lam, channels):
    # rows at the scale of x (≈ randn) and rows at the scale of the gate (|λx| ≈ 1)
    x = torch.cat([torch.randn(2, 5, dtype=torch.float64) * 2, torch.randn(2, 5, dtype=torch.float64) / lam])
    x.requires_grad_()
    shape = (channels,) if channels else (1,)
    lam_t = (lam + 0.3 * torch.rand(shape, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: lambda_gelu(a, b, approximate), (x, lam_t))


@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("channels", [1, 70], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_gradients_match_naive_for_any_layout(approximate, channels, layout):
    """The eager backward works in place on x-shaped buffers: check it on awkward memory layouts."""
    rows = 301
    if layout == "contiguous":
        x = torch.randn(rows, channels) * 2
        grad_out = torch.randn(rows, channels)
    else:  # a transposed input and a broadcast (stride-0) upstream gradient
        x = (torch.randn(channels, rows) * 2).t()
        grad_out = torch.randn(1, channels).expand(rows, channels)
    x.requires_grad_()
    lam = (1.5 + torch.rand(channels)).requires_grad_()
    gx, gl = torch.autograd.grad(lambda_gelu(x, lam, approximate), (x, lam), grad_out)

    xd, ld = x.detach().double().requires_grad_(), lam.detach().double().requires_grad_()
    rx, rl = torch.autograd.grad(naive(xd, ld, approximate), (xd, ld), grad_out.double())
    # float32 GELU-tanh backward is itself ~3e-6 off the float64 value (torch's own kernel too)
    torch.testing.assert_close(gx, rx.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gl, rl.float(), rtol=1e-5, atol=1e-5)
    assert gl.shape == lam.shape and gl.abs().min() > 0


@pytest.mark.parametrize("approximate", FORMS)
def test_empty_input(approximate):
    x = torch.randn(0, 4, requires_grad=True)
    lam = torch.full((4,), 2.0, requires_grad=True)
    y = lambda_gelu(x, lam, approximate)
    y.sum().backward()
    assert y.shape == (0, 4) and torch.equal(lam.grad, torch.zeros(4))


@pytest.mark.parametrize("approximate", FORMS)
def test_only_one_input_requires_grad(approximate):
    x = torch.randn(4, 6, dtype=torch.float64)
    lam = torch.tensor([2.0], dtype=torch.float64)
    xg = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(lambda_gelu(xg, lam, approximate).sum(), xg)
    lg = lam.clone().requires_grad_()
    (gl,) = torch.autograd.grad(lambda_gelu(x, lg, approximate).sum(), lg)
    xr, lr = x.clone().requires_grad_(), lam.clone().requires_grad_()
    rx, rl = torch.autograd.grad(naive(xr, lr, approximate).sum(), (xr, lr))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gl, rl)


def test_zero_dim_lambda_keeps_its_shape():
    x = torch.randn(3, 4)
    lam = torch.tensor(2.0, requires_grad=True)
    lambda_gelu(x, lam).sum().backward()
    assert lam.grad is not None and lam.grad.shape == ()


# --------------------------------------------------------------------------- torch.compile


@pytest.mark.parametrize(
    ("approximate", "channels"), [("none", None), ("tanh", 8)], ids=["erf-scalar", "tanh-per_channel"]
)
def test_compiled_matches_eager(approximate, channels):
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")

    def fn(x, lam):
        return lambda_gelu(x, lam, approximate) * 2.0

    compiled = torch.compile(fn, backend=counter, fullgraph=True)
    x = (torch.randn(64, 8) * 3).requires_grad_()
    lam = torch.full((channels or 1,), 3.0).add_(torch.rand(channels or 1)).requires_grad_()
    grad_out = torch.randn(64, 8)

    y_e = fn(x, lam)
    gx_e, gl_e = torch.autograd.grad(y_e, (x, lam), grad_out)
    y_c = compiled(x, lam)
    gx_c, gl_c = torch.autograd.grad(y_c, (x, lam), grad_out)
    assert counter.frame_count == 1, "the compiled function did not go through the compiler"
    torch.testing.assert_close(y_c, y_e, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gx_c, gx_e, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gl_c, gl_e, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- half precision

_EXTREMES = [0.0, 1e-4, 1e-2, 0.5, 1.0, 3.0, 30.0, 300.0, 3e3, 1e4]


def extreme_inputs() -> torch.Tensor:
    vals = torch.tensor(_EXTREMES)
    return torch.cat([vals, -vals, torch.randn(40) * 5])


def _assert_all_finite(**tensors):
    for name, t in tensors.items():
        assert t is not None, f"{name} is None"
        assert torch.isfinite(t).all(), f"{name} has NaN/inf: {t[~torch.isfinite(t)]}"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("lam", [1.0, 10.0, 1e3, 1e4])
def test_half_precision_inputs_are_safe(dtype, approximate, lam):
    x = extreme_inputs().to(dtype).requires_grad_()
    lam_t = torch.tensor([lam], requires_grad=True)
    y = lambda_gelu(x, lam_t, approximate)
    assert y.dtype == dtype
    y.backward(torch.ones_like(y))
    _assert_all_finite(y=y, dx=x.grad, dlam=lam_t.grad)
    # correct, not only finite: compare with the float64 formula at half precision's resolution
    expected = naive(x.detach().double(), lam, approximate)
    torch.testing.assert_close(y.double(), expected, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("lam", [1.0, 1e4])
def test_autocast_is_safe(dtype, approximate, lam):
    x = extreme_inputs().reshape(-1, 6).requires_grad_()
    weight = torch.eye(6, requires_grad=True)
    lam_t = torch.tensor([lam], requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        h = x @ weight  # autocast runs the matmul in half precision
        assert h.dtype == dtype
        y = lambda_gelu(h, lam_t, approximate)
        z = lambda_gelu(x, lam_t, approximate)  # a float32 input under autocast too
    (y.float().sum() + z.float().sum()).backward()
    _assert_all_finite(y=y, z=z, dx=x.grad, dw=weight.grad, dlam=lam_t.grad)


# --------------------------------------------------------------------------- saturation (large |λx|, ±inf)

INF = float("inf")


def saturating_inputs(dtype: torch.dtype) -> torch.Tensor:
    big = torch.finfo(dtype).max
    return torch.tensor([-INF, -big, -1e35, -3e30, -6e4, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6e4, 3e30, 1e35, big, INF]).to(
        dtype
    )


def _check_saturation(y, gx, glam, x, lam):
    """Finite wherever ReLU is; exactly ReLU (and its step) where the gate saturates (|λx| ≥ 1e4)."""
    xd = x.double()
    saturated = (xd * lam).abs() >= 1e4
    assert torch.isfinite(y[torch.isfinite(x)]).all(), y
    assert (y[x == INF] == INF).all() and (y[x == -INF] == 0).all()
    assert torch.equal(y.double()[saturated], torch.relu(xd)[saturated]), (x[saturated], y[saturated])
    assert torch.isfinite(gx).all() and torch.isfinite(glam).all(), (gx, glam)
    assert torch.equal(gx.double()[saturated], (xd[saturated] > 0).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("approximate", FORMS)
def test_saturated_gates_give_relu_and_finite_gradients(dtype, approximate):
    x = saturating_inputs(dtype).requires_grad_()
    # λ = 1e4 (x = -1e35 overflows λx), λ* = c/1e-9 ≈ 1.7e8 (x = 3e30 overflows), 1e30 and GELU itself
    for lam in (1.0, 1e4, RELU_DISTANCE_CONSTANT / 1e-9, 1e30):
        x.grad = None
        lam_t = torch.tensor([lam], requires_grad=True)
        y = lambda_gelu(x, lam_t, approximate)
        assert y.dtype == dtype
        y.backward(torch.ones_like(y))
        _check_saturation(y.detach(), x.grad, lam_t.grad, x.detach(), lam)


@pytest.mark.parametrize("approximate", FORMS)
def test_compiled_saturated_gates_give_relu_and_finite_gradients(approximate):
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, lam: lambda_gelu(x, lam, approximate), backend="aot_eager", fullgraph=True)
    x = saturating_inputs(torch.float32).requires_grad_()
    lam_t = torch.tensor([1e4], requires_grad=True)
    y = compiled(x, lam_t)
    y.backward(torch.ones_like(y))
    _check_saturation(y.detach(), x.grad, lam_t.grad, x.detach(), 1e4)


def test_nan_inputs_still_give_nan():
    x = torch.tensor([float("nan"), 1.0], requires_grad=True)
    lam = torch.tensor([2.0], requires_grad=True)
    y = lambda_gelu(x, lam)
    y.sum().backward()
    assert y[0].isnan() and not y[1].isnan() and x.grad[0].isnan() and lam.grad.isnan().all()


def test_half_precision_lambda_tensor_is_safe():
    x = extreme_inputs().half().requires_grad_()
    lam = torch.tensor([1e4], dtype=torch.float16, requires_grad=True)
    y = lambda_gelu(x, lam)
    y.sum().backward()
    _assert_all_finite(y=y, dx=x.grad, dlam=lam.grad)
    assert lam.grad.dtype == torch.float16


# --------------------------------------------------------------------------- memory


def _saved(fn):
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("approximate", FORMS)
@pytest.mark.parametrize("channels", [1, 48], ids=["scalar", "per_channel"])
def test_only_the_input_is_saved(approximate, channels):
    x = torch.randn(16, 48, requires_grad=True)
    lam = torch.full((channels,), 2.0, requires_grad=True)
    y, saved = _saved(lambda: lambda_gelu(x, lam, approximate))
    assert sum(t.numel() for t in saved) == x.numel() + lam.numel()
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr(), "the saved activation must be x itself"

    _, saved_gelu = _saved(lambda: F.gelu(x, approximate=approximate))
    assert sum(t.numel() for t in saved_gelu) == x.numel()
    y.sum().backward()  # the saved tensors are enough for backward
    assert x.grad is not None and lam.grad is not None


def _peak_cpu_bytes(step) -> int:
    """Most bytes live at once (CPU allocator trace) during ``step()``, beyond what existed before."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("approximate", FORMS)
def test_forward_backward_peak_memory_equals_gelus(approximate):
    """No temporary of the input's size beyond the output and grad_x that GELU needs too."""
    x = torch.randn(256, 512, requires_grad=True)
    lam = torch.tensor([2.0], requires_grad=True)
    grad_out = torch.randn(256, 512)

    def step(fn):
        def run():
            x.grad, lam.grad = None, None
            fn().backward(grad_out)

        return run

    gelu_peak = _peak_cpu_bytes(step(lambda: F.gelu(x, approximate=approximate)))
    lam_peak = _peak_cpu_bytes(step(lambda: lambda_gelu(x, lam, approximate)))
    assert gelu_peak >= 2 * x.numel() * 4  # output + grad_x: the measurement sees real tensors
    assert lam_peak <= gelu_peak + 4096, f"λ-GELU peak {lam_peak} B vs GELU {gelu_peak} B"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", ["erf", "Tanh", "", None])
def test_bad_approximate_names_the_value(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
        lambda_gelu(torch.randn(3), 1.0, bad)


def test_lambda_of_the_wrong_size():
    with pytest.raises(ValueError, match="3 values.*last dimension is 4"):
        lambda_gelu(torch.randn(2, 4), torch.ones(3))

"""The λ-GELU op: f(x; λ) = x·Φ(λx), its analytic gradients and a custom autograd Function.

Math (see METHOD.md): x·Φ(λx) = GELU(λx)/λ, so the forward runs the native GELU kernel on λx.
    df/dx = GELU'(λx)
    df/dλ = x²·φ(λx)                                  (erf form)
    df/dλ = ½·x²·sech²(u)·k·(1 + 3a(λx)²),  u = k(λx + a(λx)³)   (tanh form, k = √(2/π), a = 0.044715)

Only the input is saved for backward (activation memory equal to GELU's). Eager mode keeps the
number of full-size allocations at one per pass (they dominate CPU time) by working in place and
computing dλ chunk by chunk; under torch.compile the plain formulas are used so Inductor fuses them.
Half-precision inputs are computed in float32 internally and cast back, which keeps λ up to 1e4 and
|x| up to 1e4 free of overflow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["APPROXIMATIONS", "RELU_DISTANCE_CONSTANT", "lambda_gelu"]

APPROXIMATIONS = ("none", "tanh")

#: c = max_v v·Φ(−v): sup_x |x·Φ(λx) − ReLU(x)| = c/λ (attained at v ≈ 0.752).
RELU_DISTANCE_CONSTANT = 0.16997120747990366

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_K = math.sqrt(2.0 / math.pi)
_TANH_A = 0.044715
_TANH_Z_CLAMP = 30.0  # sech²(u(z)) underflows to exactly 0 in float32 well before |z| = 30


def _check_approximate(approximate: str) -> None:
    if approximate not in APPROXIMATIONS:
        raise ValueError(
            f"Unknown λ-GELU form approximate={approximate!r}; use one of {APPROXIMATIONS} "
            "('none' is the exact erf GELU, 'tanh' matches transformers' gelu_new)."
        )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _dlambda_density(x: torch.Tensor, lam: torch.Tensor, approximate: str) -> torch.Tensor:
    """df/dλ elementwise (functional form, used under torch.compile and for small chunks)."""
    z = x * lam
    if approximate == "none":
        return x * x * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    z = z.clamp(-_TANH_Z_CLAMP, _TANH_Z_CLAMP)
    t = torch.tanh(_TANH_K * (z + _TANH_A * z * z * z))
    return 0.5 * x * x * (1.0 - t * t) * _TANH_K * (1.0 + 3.0 * _TANH_A * z * z)


def _chunk_elements(x: torch.Tensor) -> int:
    """Elements per chunk of the eager dλ reduction.

    CPU: 32K elements (aten's parallel grain) per intra-op thread, at least 64K — every op of a chunk
    spans all threads, and a chunk's working set stays in each core's cache. Other devices: 4M
    elements (few kernel launches; the two workspaces stay small next to the activation).
    """
    if x.device.type == "cpu":
        return max(1 << 16, (1 << 15) * torch.get_num_threads())
    return 1 << 22


def _dlambda_eager(x: torch.Tensor, grad: torch.Tensor, lam: torch.Tensor, approximate: str) -> torch.Tensor:
    """Σ grad·df/dλ reduced to lam's shape, chunk by chunk in two small reusable workspaces.

    Per chunk: 4 in-place ops + 1 dot (erf) or 11 + 1 (tanh), no allocation; the constant factors
    (1/√(2π), k/2) are applied once to the total. ``lam`` has the compute dtype.
    """
    channels = lam.numel()
    xs = x.reshape(-1, channels)
    gs = grad.reshape(-1, channels)
    dtype = lam.dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    total = torch.zeros(channels, dtype=acc, device=x.device)
    if xs.shape[0] == 0:
        return total.reshape(lam.shape).to(dtype)
    rows = min(xs.shape[0], max(1, _chunk_elements(x) // channels))
    work1 = torch.empty(rows, channels, dtype=dtype, device=x.device)
    work2 = torch.empty_like(work1)
    one = torch.ones((), dtype=dtype, device=x.device)
    if approximate == "none":
        coef = lam * lam * -0.5
    else:  # work in kz = k·λx, so u = kz·(1 + a/k²·(kz)²)
        klam = lam * _TANH_K
        a_over_k2 = _TANH_A / (_TANH_K * _TANH_K)
        kz_clamp = _TANH_Z_CLAMP * _TANH_K
    for start in range(0, xs.shape[0], rows):
        xc = xs[start : start + rows]
        gc = gs[start : start + rows]
        w1, w2 = work1[: xc.shape[0]], work2[: xc.shape[0]]
        if xc.dtype != dtype:
            xc = xc.to(dtype)
        if gc.dtype != dtype:
            gc = gc.to(dtype)
        if approximate == "none":
            torch.mul(xc, xc, out=w1)  # x²
            torch.mul(w1, coef, out=w2)
            w2.exp_().mul_(w1)  # x²·exp(−(λx)²/2) = √(2π)·x²·φ(λx)
        else:
            torch.mul(xc, klam, out=w1).clamp_(-kz_clamp, kz_clamp)  # kz
            torch.addcmul(one, w1, w1, value=a_over_k2, out=w2)  # 1 + a·z²
            w1.mul_(w2).tanh_()  # t = tanh(u)
            torch.addcmul(one, w1, w1, value=-1.0, out=w1)  # sech²(u) = 1 − t²
            w2.mul_(3.0).sub_(2.0)  # 1 + 3a·z²
            w2.mul_(w1).mul_(xc).mul_(xc)  # 2/k · df/dλ
        if channels == 1:
            total += torch.dot(w2.reshape(-1), gc.reshape(-1)).to(acc)
        else:
            total += w2.mul_(gc).sum(0, dtype=acc)
    total *= _INV_SQRT_2PI if approximate == "none" else 0.5 * _TANH_K
    return total.reshape(lam.shape).to(dtype)


class LambdaGELUFunction(torch.autograd.Function):
    """Autograd Function for x·Φ(λx) = GELU(λx)/λ; saves only x (and the tiny λ)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor, approximate: str) -> torch.Tensor:
        ctx.approximate = approximate
        ctx.save_for_backward(x, lam)
        compute = _compute_dtype(x)
        lam_c = lam.to(compute)
        if torch.compiler.is_compiling():
            return (F.gelu(x.to(compute) * lam_c, approximate=approximate) / lam_c).to(x.dtype)
        y = torch.mul(x.to(compute), lam_c)
        torch.ops.aten.gelu.out(y, approximate=approximate, out=y)
        y.div_(lam_c)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, lam = ctx.saved_tensors
        approximate = ctx.approximate
        compute = _compute_dtype(x)
        lam_c = lam.to(compute)
        grad_x = grad_lam = None
        if torch.compiler.is_compiling():
            xc, gc = x.to(compute), grad.to(compute)
            if ctx.needs_input_grad[0]:
                grad_x = torch.ops.aten.gelu_backward(gc, xc * lam_c, approximate=approximate).to(x.dtype)
            if ctx.needs_input_grad[1]:
                dens = (_dlambda_density(xc, lam_c, approximate) * gc).reshape(-1, lam.numel())
                grad_lam = dens.sum(0).reshape(lam.shape).to(lam.dtype)
            return grad_x, grad_lam, None
        if ctx.needs_input_grad[1]:
            grad_lam = _dlambda_eager(x, grad, lam_c, approximate).to(lam.dtype)
        if ctx.needs_input_grad[0]:
            z = torch.mul(x.to(compute), lam_c)
            torch.ops.aten.gelu_backward.grad_input(grad.to(compute), z, approximate=approximate, grad_input=z)
            grad_x = z.to(x.dtype)
        return grad_x, grad_lam, None


def lambda_gelu(x: torch.Tensor, lam: torch.Tensor | float, approximate: str = "none") -> torch.Tensor:
    """λ-GELU: x·Φ(λx) (``approximate="none"``) or its tanh-approximated form (``"tanh"``).

    Args:
        x: input tensor of any shape.
        lam: gate hardness λ ≥ 1, a float, a 1-element tensor, or one value per channel (last dim of x).
        approximate: ``"none"`` (exact erf; equals transformers' ``"gelu"`` at λ = 1) or ``"tanh"``
            (equals ``"gelu_new"`` / ``"gelu_pytorch_tanh"`` at λ = 1).

    Returns:
        A tensor like ``x``. Gradients flow to ``x`` and, if it requires grad, to ``lam``.

    >>> import torch
    >>> from hf_lambda_gelu import lambda_gelu
    >>> x = torch.linspace(-3, 3, 7)
    >>> torch.allclose(lambda_gelu(x, 1.0), torch.nn.functional.gelu(x))
    True
    """
    _check_approximate(approximate)
    if not isinstance(lam, torch.Tensor):
        lam = torch.tensor([float(lam)], dtype=_compute_dtype(x), device=x.device)
    if lam.dim() == 0:
        lam = lam.reshape(1)
    if lam.numel() not in (1, x.shape[-1]):
        raise ValueError(
            f"λ has {lam.numel()} values but the input's last dimension is {x.shape[-1]}; "
            "pass one λ or one per channel."
        )
    return LambdaGELUFunction.apply(x, lam, approximate)

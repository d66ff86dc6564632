"""The λ-GELU op: f(x; λ) = x·Φ(λx), its analytic gradients and a custom autograd Function.

x·Φ(λx) = GELU(λx)/λ, so the forward runs the native GELU kernel on λx; df/dx = GELU'(λx),
df/dλ = x²·φ(λx) (erf form; the tanh form's derivative is in docs/method.md §1). Only the input is
saved for backward (GELU's activation memory), and large |λx| saturates to ReLU's exact values
instead of overflowing. At λ = 1 the eager path is bitwise GELU. How the eager and compiled paths
are built (and what the saturation check costs) is in docs/design.md.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import InvalidInputError, InvalidSettingError

__all__ = ["APPROXIMATIONS", "RELU_DISTANCE_CONSTANT", "lambda_gelu", "relu_keep_lambda"]

APPROXIMATIONS = ("none", "tanh")

#: c = max_v v·Φ(−v): sup_x |x·Φ(λx) − ReLU(x)| = c/λ (attained at v ≈ 0.752).
RELU_DISTANCE_CONSTANT = 0.16997120747990366

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_K = math.sqrt(2.0 / math.pi)
_TANH_A = 0.044715
_TANH_Z_CLAMP = 30.0  # sech²(u(z)) underflows to exactly 0 in float32 well before |z| = 30
_SATURATION = 1e4  # |λx| beyond it: Φ(λx) is exactly 0 or 1 and φ(λx) exactly 0, in float32 and float64
_FAST_PATH_LIMIT = 1e12  # max|x|·max λ up to it: no overflow anywhere in the in-place kernels


def _fast_path_ok(x: torch.Tensor, lam: torch.Tensor) -> bool:
    """True when the eager in-place kernels cannot overflow: one read-only pass over x (a host sync on GPU)."""
    if x.numel() == 0:
        return True
    low, high = torch.aminmax(x)
    bound = max(-float(low), float(high)) * float(lam.detach().abs().max())
    return bound <= _FAST_PATH_LIMIT  # False for inf and NaN too


def _saturated(z: torch.Tensor, positive: torch.Tensor, middle: torch.Tensor) -> torch.Tensor:
    """``positive`` where λx ≥ _SATURATION, 0 where λx ≤ −_SATURATION, ``middle`` elsewhere (and for NaN)."""
    return torch.where(z >= _SATURATION, positive, torch.where(z <= -_SATURATION, 0.0, middle))


def _check_approximate(approximate: str) -> None:
    if approximate not in APPROXIMATIONS:
        raise InvalidSettingError(
            "approximate",
            approximate,
            f"use one of {APPROXIMATIONS} ('none' is the exact erf GELU, 'tanh' matches transformers' gelu_new).",
        )


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _dlambda_density(x: torch.Tensor, lam: torch.Tensor, approximate: str) -> torch.Tensor:
    """df/dλ elementwise (functional form, used under torch.compile so Inductor fuses it)."""
    z = x * lam
    if approximate == "none":
        return x * x * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    z = z.clamp(-_TANH_Z_CLAMP, _TANH_Z_CLAMP)
    t = torch.tanh(_TANH_K * (z + _TANH_A * z * z * z))
    return 0.5 * x * x * (1.0 - t * t) * _TANH_K * (1.0 + 3.0 * _TANH_A * z * z)


def _dlambda_eager(
    x: torch.Tensor, grad: torch.Tensor, lam: torch.Tensor, approximate: str, work: torch.Tensor
) -> torch.Tensor:
    """Σ grad·df/dλ reduced to lam's shape, computed in place in ``work`` (x's shape, lam's dtype).

    ``work`` is the buffer that then receives grad_x, so dλ costs no extra memory, and the whole
    reduction is ~7 (erf) or ~14 (tanh) full-size in-place ops. It is not chunked (why: docs/design.md).
    Mixed dtypes (half x, float32 work) go through type promotion.
    """
    channels = lam.numel()
    torch.mul(x, x, out=work)  # x²
    if approximate == "none":
        work.mul_(lam * lam * -0.5).exp_().mul_(x).mul_(x).mul_(grad)  # √(2π)·grad·x²·φ(λx)
        total = work.view(-1, channels).sum(0, dtype=work.dtype) * _INV_SQRT_2PI
    else:
        # df/dλ = k/2·x²·sech²(u)·(1 + 3a·z²), z = λx, u = k·z·(1 + a·z²); split as k/2·(S1 + 3aλ²·S2)
        # with S1 = Σ grad·x²·sech²(u), S2 = Σ grad·x⁴·sech²(u). z² is clamped at _TANH_Z_CLAMP²:
        # beyond it |u| > 900 and sech²(u) is exactly 0 anyway.
        one = torch.ones((), dtype=work.dtype, device=work.device)
        work.mul_(lam * lam * _TANH_A).clamp_max_(_TANH_A * _TANH_Z_CLAMP**2).add_(1.0)  # 1 + a·z²
        work.mul_(x).mul_(lam * _TANH_K).tanh_()  # t = tanh(u)
        torch.addcmul(one, work, work, value=-1.0, out=work)  # sech²(u) = 1 − t²
        work.mul_(grad).mul_(x).mul_(x)
        s1 = work.view(-1, channels).sum(0, dtype=work.dtype)
        work.mul_(x).mul_(x)
        s2 = work.view(-1, channels).sum(0, dtype=work.dtype)
        total = (s1 + 3.0 * _TANH_A * lam * lam * s2) * (0.5 * _TANH_K)
    return total.reshape(lam.shape)


class LambdaGELUFunction(torch.autograd.Function):
    """Autograd Function for x·Φ(λx) = GELU(λx)/λ; saves only x (and the tiny λ)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor, approximate: str) -> torch.Tensor:
        ctx.approximate = approximate
        ctx.save_for_backward(x, lam)
        compute = _compute_dtype(x)
        lam_c = lam.to(compute)
        ctx.fast = not torch.compiler.is_compiling() and _fast_path_ok(x, lam_c)
        if not ctx.fast:
            xc = x.to(compute)
            z = xc * lam_c
            y = F.gelu(z.clamp(-_SATURATION, _SATURATION), approximate=approximate) / lam_c
            return _saturated(z, xc, y).to(x.dtype)
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
        if not ctx.fast:  # functional, saturation-safe (see the module docstring)
            xc, gc = x.to(compute), grad.to(compute)
            z = xc * lam_c
            if ctx.needs_input_grad[0]:
                inner = torch.ops.aten.gelu_backward(gc, z.clamp(-_SATURATION, _SATURATION), approximate=approximate)
                grad_x = _saturated(z, gc, inner).to(x.dtype)
            if ctx.needs_input_grad[1]:
                x_mid = _saturated(z, torch.zeros_like(xc), xc)  # df/dλ = 0 where the gate saturates
                dens = (_dlambda_density(x_mid, lam_c, approximate) * gc).reshape(-1, lam.numel())
                grad_lam = dens.sum(0).reshape(lam.shape).to(lam.dtype)
            return grad_x, grad_lam, None
        # One full-size buffer, as GELU's backward allocates: first dλ's workspace, then grad_x.
        work = torch.empty(x.shape, dtype=compute, device=x.device)
        if ctx.needs_input_grad[1]:
            grad_lam = _dlambda_eager(x, grad, lam_c, approximate, work).to(lam.dtype)
        if ctx.needs_input_grad[0]:
            torch.mul(x, lam_c, out=work)
            torch.ops.aten.gelu_backward.grad_input(grad.to(compute), work, approximate=approximate, grad_input=work)
            grad_x = work.to(x.dtype)
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
        raise InvalidInputError(
            f"λ has {lam.numel()} values but the input's last dimension is {x.shape[-1]}; "
            "pass one λ or one per channel."
        )
    return LambdaGELUFunction.apply(x, lam, approximate)


class ReluKeepLambdaFunction(torch.autograd.Function):
    """ReLU(x), exactly as ``nn.ReLU`` (same forward, same ``threshold_backward``), with λ kept in the graph.

    λ gets an exact-zero gradient, so a λ-GELU module switched to its ReLU forward mid-training
    (consolidation after hardening) still produces a gradient for its parameter: DDP with
    ``find_unused_parameters=False`` keeps working, and no parameter leaves the optimizer.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)
        ctx.save_for_backward(y)
        ctx.lam_like = (lam.shape, lam.dtype, lam.device)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (y,) = ctx.saved_tensors
        grad_x = torch.ops.aten.threshold_backward(grad, y, 0) if ctx.needs_input_grad[0] else None
        shape, dtype, device = ctx.lam_like
        grad_lam = torch.zeros(shape, dtype=dtype, device=device) if ctx.needs_input_grad[1] else None
        return grad_x, grad_lam


def relu_keep_lambda(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``relu(x)`` bit for bit (values and input gradient), with a zero gradient flowing to ``lam``.

    Args:
        x: input tensor of any shape.
        lam: the λ tensor of the layer (any shape); it receives an all-zero gradient.

    >>> import torch
    >>> x = torch.linspace(-2, 2, 5)
    >>> torch.equal(relu_keep_lambda(x, torch.ones(1)), torch.relu(x))
    True
    """
    return ReluKeepLambdaFunction.apply(x, lam)

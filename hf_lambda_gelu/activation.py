"""``LambdaGELU``: the nn.Module that holds λ's parameter and calls the op in :mod:`.ops`.

λ is reparameterized as λ = 1 + softplus(s/τ) (docs/method.md §3), so λ ≥ 1 for any value of the raw
parameter ``s`` (shape (1,) — FSDP rejects 0-dim parameters — or (C,) with one λ per channel). The
default initial λ is exactly 1.0 in float32 (bitwise GELU) with a nonzero gradient; pinning and the
ReLU forward used by hardening keep λ in the autograd graph with a zero gradient (docs/method.md §6).
FSDP2, pinning and ReLU-forward details: docs/design.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torch.distributed.tensor import DTensor, distribute_tensor
except ImportError:  # a torch built without distributed support: no λ is ever a DTensor
    DTensor = ()

from .config import DEFAULT_TEMPERATURE, MIN_LAMBDA_OFFSET, LambdaGELUConfig
from .errors import InvalidSettingError
from .ops import _check_approximate, lambda_gelu, relu_keep_lambda

__all__ = [
    "LambdaGELU",
    "has_lambda_gelu",
    "lambda_modules",
    "lambda_parameters",
    "lambda_to_raw",
    "raw_to_lambda",
]


def raw_to_lambda(raw: torch.Tensor, temperature: float) -> torch.Tensor:
    """λ = 1 + softplus(s/τ)."""
    return 1.0 + F.softplus(raw / temperature)


def lambda_to_raw(lam: torch.Tensor | float, temperature: float) -> torch.Tensor:
    """Numerically stable inverse of :func:`raw_to_lambda` (no overflow for λ ~ 1e5 and beyond).

    softplus⁻¹(y) = y + log(−expm1(−y)) for y > 0; y is floored at ``MIN_LAMBDA_OFFSET``.
    """
    lam = torch.as_tensor(lam, dtype=torch.float64)
    y = (lam - 1.0).clamp_min(MIN_LAMBDA_OFFSET)
    return (y + torch.log(-torch.expm1(-y))) * temperature


class LambdaGELU(nn.Module):
    """λ-GELU activation f(x; λ) = x·Φ(λx) with a learnable hardness λ ≥ 1.

    Args:
        lambda_init: initial λ (≥ 1). ``1.0`` reproduces GELU (see the module docstring).
        lambda_temperature: softplus temperature τ > 0 of the reparameterization.
        approximate: ``"none"`` (erf GELU at λ = 1) or ``"tanh"`` (gelu_new at λ = 1).
        num_channels: ``None`` for one λ for the layer, or C for one λ per channel (last dim).

    >>> import torch
    >>> act = LambdaGELU()
    >>> act(torch.zeros(2, 3)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        lambda_init: float = 1.0,
        lambda_temperature: float = DEFAULT_TEMPERATURE,
        approximate: str = "none",
        num_channels: int | None = None,
    ) -> None:
        super().__init__()
        settings = LambdaGELUConfig(lambda_init=lambda_init, lambda_temperature=lambda_temperature)
        _check_approximate(approximate)
        if num_channels is not None and num_channels < 1:
            raise InvalidSettingError("num_channels", num_channels, "use None (one λ) or a positive count.")
        self.lambda_init = settings.lambda_init
        self.lambda_temperature = settings.lambda_temperature
        self.approximate = approximate
        self.num_channels = num_channels
        shape = (num_channels or 1,)
        self.lambda_raw = nn.Parameter(torch.empty(shape))
        self.register_buffer("pinned", torch.zeros(shape), persistent=False)
        #: Forward exactly as ReLU (consolidation after hardening); see the module docstring.
        self.relu_forward = False
        self.reset_parameters()

    @torch.no_grad()
    def configure(self, settings: LambdaGELUConfig, num_channels: int | None) -> None:
        """Apply settings from a model config (before weights are initialized or loaded)."""
        self.lambda_init = settings.lambda_init
        self.lambda_temperature = settings.lambda_temperature
        if num_channels != self.num_channels:
            shape = (num_channels or 1,)
            kw = {"device": self.lambda_raw.device, "dtype": self.lambda_raw.dtype}
            self.lambda_raw = nn.Parameter(torch.empty(shape, **kw))
            self.pinned = torch.zeros(shape, device=self.pinned.device)
            self.num_channels = num_channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set λ to ``lambda_init`` and unpin, skipping tensors transformers marks as loaded."""
        from transformers import initialization as init

        init.copy_(self.lambda_raw, self._raw_like(self.lambda_init))
        init.zeros_(self.pinned)

    def _raw_like(self, lam: torch.Tensor | float) -> torch.Tensor:
        if isinstance(lam, DTensor):
            lam = lam.full_tensor()
        raw = lambda_to_raw(lam, self.lambda_temperature)
        return raw.to(self.lambda_raw.dtype).expand(self.lambda_raw.shape).to(self.lambda_raw.device)

    @property
    def lambda_(self) -> torch.Tensor:
        """λ as a tensor (shape (1,) or (C,)); gradient-free where pinned.

        A DTensor-sharded λ (FSDP2, outside forward) is gathered first: every rank must read it.
        """
        raw = self.lambda_raw
        if isinstance(raw, DTensor):
            raw = raw.full_tensor()
        lam = raw_to_lambda(raw, self.lambda_temperature)
        return lam + self.pinned * (lam.detach() - lam)

    @torch.no_grad()
    def set_lambda(self, value: torch.Tensor | float) -> None:
        """Write λ in place (the raw parameter's storage is kept: optimizers, DDP and FSDP2 keep working)."""
        raw, target = self._raw_like(value), self.lambda_raw
        if isinstance(target, DTensor):  # FSDP2: write this rank's shard, with the same placement
            shard = distribute_tensor(raw, target.device_mesh, target.placements, src_data_rank=None)
            target.to_local().copy_(shard.to_local())
        else:
            target.copy_(raw)

    @torch.no_grad()
    def pin(self, value: torch.Tensor | float | None = None) -> None:
        """Freeze λ (optionally at ``value``) without taking the parameter out of the graph."""
        if value is not None:
            self.set_lambda(value)
        self.pinned.fill_(1.0)

    @torch.no_grad()
    def unpin(self) -> None:
        """Let λ learn again."""
        self.pinned.fill_(0.0)

    @property
    def is_pinned(self) -> bool:
        return bool(self.pinned.bool().all())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu_forward:
            return relu_keep_lambda(x, self.lambda_)
        return lambda_gelu(x, self.lambda_, self.approximate)

    def extra_repr(self) -> str:
        if isinstance(self.lambda_raw, DTensor):  # reading would be a collective
            return f"lambda=<sharded>, approximate={self.approximate!r}, lambda_temperature={self.lambda_temperature}"
        lam = self.lambda_.detach()
        shown = f"{lam.item():.6g}" if lam.numel() == 1 else f"[{lam.min().item():.4g}..{lam.max().item():.4g}]"
        pinned = ", pinned" if self.is_pinned else ""
        relu = ", relu_forward" if self.relu_forward else ""
        return f"lambda={shown}, approximate={self.approximate!r}, lambda_temperature={self.lambda_temperature}{pinned}{relu}"


def lambda_modules(model: nn.Module) -> list[tuple[str, LambdaGELU]]:
    """(qualified name, module) for every λ-GELU, found by type (so PEFT-renamed modules count).

    Modules held under several names (PEFT's ``modules_to_save`` keeps an original and a copy) are
    listed once per object.

    >>> lambda_modules(nn.Sequential(nn.Linear(2, 2), LambdaGELU()))[0][0]
    '1'
    """
    seen: set[int] = set()
    found = []
    for name, module in model.named_modules():
        if isinstance(module, LambdaGELU) and id(module) not in seen:
            seen.add(id(module))
            found.append((name, module))
    return found


def lambda_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The raw λ parameters of every λ-GELU module."""
    return [module.lambda_raw for _, module in lambda_modules(model)]


def has_lambda_gelu(model: nn.Module) -> bool:
    """Whether ``model`` holds any :class:`LambdaGELU` module.

    >>> has_lambda_gelu(nn.Sequential(nn.GELU())), has_lambda_gelu(LambdaGELU())
    (False, True)
    """
    return any(isinstance(m, LambdaGELU) for m in model.modules())

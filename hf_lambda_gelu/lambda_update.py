r"""The optimizer-aware λ update: steps in λ-space set by the λ learning rate, wherever s sits.

Why (METHOD.md). λ = 1 + softplus(s/τ) keeps λ ≥ 1, but an optimizer that steps s sees
g_s = (dλ/ds)·g_λ with dλ/ds = sigmoid(s/τ)/τ, which is ≈ (λ−1)/τ near GELU (≈ 1e-5 at the default
start). Its step in λ-space is then, to first order,

    Adam-family (Δs ≈ −η·m̂/√v̂, scale-free):  Δλ ≈ −η·(dλ/ds)·m̂/√v̂   → collapses near λ = 1, grows 1/τ far away
    SGD-family  (Δs = −η·g_s):               Δλ ≈ −η·(dλ/ds)²·g_λ     → collapses quadratically, and
                                                                         ∂L/∂λ itself is tiny (x²φ(λx) averaged)

so the rate at which λ moves depends on where s sits (orders of magnitude) and on the family.

The rule. For the parameters of the λ group, around every ``optimizer.step()``:

1. (pre-step) replace the gradient by the λ-space gradient g_λ = g_s / (dλ/ds)   — exact chain rule;
   for SGD-family optimizers, also normalize it by a running RMS,
   ĝ = g_λ / (√(EMA_β(g_λ²)/(1−β^t)) + eps), kept in ``optimizer.state[p]`` (so it is checkpointed).
   Adam-family optimizers normalize by themselves, so they get g_λ unchanged.
2. (optimizer step) the optimizer computes its step δ = s_new − s_old from that gradient, with the
   λ group's learning rate η_λ: δ ≈ −η_λ·(unit-scale direction) for both families.
3. (post-step) apply δ in λ-space and map back: λ_new = max(λ(s_old) + δ, 1 + 1e-8),
   s_new = softplus⁻¹(λ_new − 1)·τ (numerically stable). Pinned λ are restored to λ(s_old).

Hence |Δλ| ≈ η_λ per step while the gradient sign is consistent, for Adam-family and SGD-family
optimizers alike, at λ = 1 (the default start) as at λ = 10; λ never leaves [1, ∞). Momentum and the LR schedule
work as usual (in λ units). Any other optimizer needs ``family`` given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .activation import MIN_LAMBDA_OFFSET, LambdaGELU, lambda_modules, lambda_to_raw, raw_to_lambda

__all__ = ["OPTIMIZER_FAMILIES", "LambdaUpdateHandle", "install_lambda_update", "optimizer_family"]

OPTIMIZER_FAMILIES = ("auto", "adaptive", "sgd")
_ADAPTIVE = ("Adam", "Adagrad", "Adadelta", "RMSprop", "Adafactor", "Lion", "LAMB", "Lamb", "Sophia", "Prodigy")
_SGD = ("SGD",)
_BETA = 0.99
_EPS = 1e-12


def optimizer_family(optimizer: torch.optim.Optimizer) -> str:
    """'adaptive' (per-parameter normalized steps: Adam, AdamW, Adafactor, RMSprop, ...) or 'sgd'.

    Raises:
        ValueError: the family cannot be told from the class; pass ``family=`` explicitly.
    """
    names = [cls.__name__ for cls in type(optimizer).__mro__]
    if any(tag in n for n in names for tag in _ADAPTIVE):
        return "adaptive"
    if any(tag in n for n in names for tag in _SGD):
        return "sgd"
    raise ValueError(
        f"Cannot tell whether optimizer {type(optimizer).__name__} normalizes its steps; pass "
        "family='adaptive' (Adam-like) or family='sgd' (plain gradient steps), e.g. "
        "LambdaGELUTrainingArguments(lambda_optimizer_family=...)."
    )


@dataclass
class LambdaUpdateHandle:
    """Returned by :func:`install_lambda_update`; ``remove()`` uninstalls the hooks."""

    family: str
    modules: dict[int, LambdaGELU]
    hooks: list = field(default_factory=list)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()


def install_lambda_update(
    optimizer: torch.optim.Optimizer, model: nn.Module, *, family: str = "auto"
) -> LambdaUpdateHandle:
    """Make ``optimizer`` step the λ parameters of ``model`` in λ-space (see the module docstring).

    Args:
        optimizer: an optimizer whose param groups include the λ parameters
            (e.g. built from :func:`hf_lambda_gelu.lambda_param_groups`).
        model: the model holding the :class:`LambdaGELU` modules.
        family: ``"auto"`` (from the optimizer class), ``"adaptive"`` or ``"sgd"``.

    Returns:
        A handle with the resolved family; ``handle.remove()`` restores the plain behaviour.

    >>> import torch
    >>> from hf_lambda_gelu import LambdaGELU, lambda_param_groups
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), LambdaGELU())
    >>> opt = torch.optim.AdamW(lambda_param_groups(model, lr=1e-3, weight_decay=0.0, lambda_lr=0.1))
    >>> install_lambda_update(opt, model).family
    'adaptive'
    """
    if family not in OPTIMIZER_FAMILIES:
        raise ValueError(f"family={family!r} is invalid; use one of {OPTIMIZER_FAMILIES}.")
    resolved = optimizer_family(optimizer) if family == "auto" else family
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    modules = {id(m.lambda_raw): m for _, m in lambda_modules(model) if id(m.lambda_raw) in in_optimizer}
    handle = LambdaUpdateHandle(resolved, modules)
    previous: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def pre_step(opt, args, kwargs):
        previous.clear()
        for group in opt.param_groups:
            for p in group["params"]:
                module = modules.get(id(p))
                if module is None or p.grad is None:
                    continue
                previous[id(p)] = p.detach().clone()
                dlam_ds = torch.sigmoid(p.detach() / module.temperature) / module.temperature
                grad = p.grad.div_(dlam_ds.clamp_min(torch.finfo(p.dtype).tiny))
                if resolved == "sgd":
                    state = opt.state[p]
                    sq = state.setdefault("lambda_grad_sq_avg", torch.zeros_like(p))
                    steps = state["lambda_steps"] = state.get("lambda_steps", 0) + 1
                    sq.mul_(_BETA).addcmul_(grad, grad, value=1 - _BETA)
                    grad.div_((sq / (1 - _BETA**steps)).sqrt_().add_(_EPS))

    @torch.no_grad()
    def post_step(opt, args, kwargs):
        for pid, old in previous.items():
            module = modules[pid]
            p = module.lambda_raw
            lam_old = raw_to_lambda(old, module.temperature)
            if module.is_pinned:
                p.copy_(old)
                continue
            lam_new = (lam_old + (p.detach() - old)).clamp_min(1.0 + MIN_LAMBDA_OFFSET)
            p.copy_(lambda_to_raw(lam_new, module.temperature).to(p.dtype))
        previous.clear()

    handle.hooks.append(optimizer.register_step_pre_hook(pre_step))
    handle.hooks.append(optimizer.register_step_post_hook(post_step))
    return handle

r"""The optimizer side of λ-GELU: λ in a parameter group of its own, stepped in λ-space.

Any ``transformers.Trainer`` (TRL's ``SFTTrainer``, your own subclass) runs the method with an
optimizer from :func:`create_lambda_gelu_optimizer` (``optimizers=(optimizer, None)``), a
:class:`~hf_lambda_gelu.HardeningCallback` and a final :func:`~hf_lambda_gelu.reluize`;
:class:`~hf_lambda_gelu.LambdaGELUTrainer` builds its optimizer with the same function.

Why λ gets its own update: through λ = 1 + softplus(s/τ) an optimizer's step in λ-space depends on
where s sits and on the optimizer family (it collapses near λ = 1). Around every ``optimizer.step()``
the λ gradient is turned into the λ-space gradient (RMS-normalized for SGD-family optimizers), and the
optimizer's step is applied in λ-space and mapped back, so |Δλ| ≈ the λ learning rate per step for
Adam- and SGD-family optimizers alike and λ never leaves [1, ∞). Derivation: docs/method.md §4.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .activation import LambdaGELU, lambda_modules, lambda_parameters, lambda_to_raw, raw_to_lambda
from .config import MIN_LAMBDA_OFFSET
from .errors import LambdaOptimizerError, NotLambdaGELUModelError

__all__ = [
    "OPTIMIZER_FAMILIES",
    "LambdaUpdateHandle",
    "create_lambda_gelu_optimizer",
    "install_lambda_update",
    "lambda_param_groups",
    "optimizer_family",
]

OPTIMIZER_FAMILIES = ("auto", "adaptive", "sgd")
_ADAPTIVE = ("Adam", "Adagrad", "Adadelta", "RMSprop", "Adafactor", "Lion", "LAMB", "Lamb", "Sophia", "Prodigy")
_SGD = ("SGD",)
_BETA = 0.99
_EPS = 1e-12
_NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


# -- parameter groups ------------------------------------------------------------------------
def _decay_parameter_names(model: nn.Module) -> set[str]:
    from transformers.trainer_pt_utils import get_parameter_names

    return set(get_parameter_names(model, [nn.LayerNorm], list(_NO_DECAY_PATTERNS)))


def lambda_param_groups(
    model: nn.Module,
    *,
    lr: float,
    lambda_learning_rate: float,
    weight_decay: float = 0.0,
    decay_parameter_names: Iterable[str] | None = None,
) -> list[dict]:
    """Parameter groups: decayed weights, non-decayed weights (bias/norm), and λ.

    λ parameters are found by module type and get their own learning rate and no weight decay;
    the rest is split the way transformers' Trainer splits it. Frozen parameters are left out,
    and so are trainable λ of modules PEFT keeps frozen.

    Args:
        model: the model (a PEFT-wrapped model works).
        lr: learning rate of the weights.
        lambda_learning_rate: learning rate of λ (≥ 0), in λ units per step once
            :func:`install_lambda_update` is installed.
        weight_decay: weight decay of the decayed group.
        decay_parameter_names: names that get weight decay; default: like ``Trainer.get_decay_parameter_names``.

    Returns:
        ``[{"params": [...], "weight_decay": wd, "lr": lr}, {... 0.0 ...}, {"params": λs,
        "lr": lambda_learning_rate, "weight_decay": 0.0, "lambda_group": True}]`` (empty groups dropped).

    Raises:
        LambdaOptimizerError: ``lambda_learning_rate`` is negative.

    >>> import torch
    >>> from hf_lambda_gelu import LambdaGELU
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4), LambdaGELU())
    >>> groups = lambda_param_groups(model, lr=1e-3, lambda_learning_rate=1e-2, weight_decay=0.01)
    >>> [(len(g["params"]), g["lr"]) for g in groups]
    [(1, 0.001), (1, 0.001), (1, 0.01)]
    """
    if not lambda_learning_rate >= 0:
        raise LambdaOptimizerError("lambda_learning_rate", lambda_learning_rate, "use a λ step size ≥ 0, e.g. 1e-2.")
    lambda_ids = {id(p) for p in lambda_parameters(model)}
    decay = _decay_parameter_names(model) if decay_parameter_names is None else set(decay_parameter_names)
    groups: dict[str, list[torch.Tensor]] = {"decay": [], "no_decay": [], "lambda": []}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        key = "lambda" if id(param) in lambda_ids else ("decay" if name in decay else "no_decay")
        groups[key].append(param)
    result = [
        {"params": groups["decay"], "weight_decay": weight_decay, "lr": lr},
        {"params": groups["no_decay"], "weight_decay": 0.0, "lr": lr},
        {"params": groups["lambda"], "weight_decay": 0.0, "lr": lambda_learning_rate, "lambda_group": True},
    ]
    return [g for g in result if g["params"]]


# -- the λ-space update ----------------------------------------------------------------------
def optimizer_family(optimizer: torch.optim.Optimizer) -> str:
    """'adaptive' (per-parameter normalized steps: Adam, AdamW, Adafactor, RMSprop, ...) or 'sgd'.

    Raises:
        LambdaOptimizerError: the family cannot be told from the class; pass it explicitly.

    >>> import torch
    >>> optimizer_family(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    'sgd'
    """
    names = [cls.__name__ for cls in type(optimizer).__mro__]
    if any(tag in n for n in names for tag in _ADAPTIVE):
        return "adaptive"
    if any(tag in n for n in names for tag in _SGD):
        return "sgd"
    raise LambdaOptimizerError(
        "lambda_optimizer_family",
        "auto",
        f"cannot tell whether {type(optimizer).__name__} normalizes its steps; pass "
        "lambda_optimizer_family='adaptive' (Adam-like) or 'sgd' (plain gradient steps), e.g. "
        "LambdaGELUTrainingArguments(lambda_optimizer_family=...).",
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
        for optimizer, handle in list(_INSTALLED.items()):
            if handle is self:
                del _INSTALLED[optimizer]


#: optimizer → its installed handle, so installing twice (e.g. LambdaGELUTrainer given an optimizer
#: from create_lambda_gelu_optimizer) never applies the update twice.
_INSTALLED: weakref.WeakKeyDictionary[torch.optim.Optimizer, LambdaUpdateHandle] = weakref.WeakKeyDictionary()


def install_lambda_update(
    optimizer: torch.optim.Optimizer, model: nn.Module, *, lambda_optimizer_family: str = "auto"
) -> LambdaUpdateHandle:
    """Make ``optimizer`` step the λ parameters of ``model`` in λ-space (see the module docstring).

    Installing on an optimizer that already has the update returns the installed handle.

    Args:
        optimizer: an optimizer whose param groups include the λ parameters
            (e.g. built from :func:`lambda_param_groups`); an accelerate-wrapped one is unwrapped.
        model: the model holding the :class:`LambdaGELU` modules.
        lambda_optimizer_family: ``"auto"`` (from the optimizer class), ``"adaptive"`` or ``"sgd"``.

    Returns:
        A handle with the resolved family; ``handle.remove()`` restores the plain behaviour.

    Raises:
        LambdaOptimizerError: an unknown family, a family the optimizer class does not reveal
            (with ``"auto"``), or one that differs from the update already installed.

    >>> import torch
    >>> from hf_lambda_gelu import LambdaGELU, lambda_param_groups
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), LambdaGELU())
    >>> opt = torch.optim.AdamW(lambda_param_groups(model, lr=1e-3, lambda_learning_rate=0.1))
    >>> install_lambda_update(opt, model).family
    'adaptive'
    """
    if lambda_optimizer_family not in OPTIMIZER_FAMILIES:
        raise LambdaOptimizerError(
            "lambda_optimizer_family", lambda_optimizer_family, f"use one of {OPTIMIZER_FAMILIES}."
        )
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):  # accelerate's wrapper
        optimizer = optimizer.optimizer
    installed = _INSTALLED.get(optimizer)
    if installed is not None:
        if lambda_optimizer_family not in ("auto", installed.family):
            raise LambdaOptimizerError(
                "lambda_optimizer_family",
                lambda_optimizer_family,
                f"this optimizer already steps λ as {installed.family!r}; remove() that update first.",
            )
        return installed
    resolved = optimizer_family(optimizer) if lambda_optimizer_family == "auto" else lambda_optimizer_family
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
                dlam_ds = torch.sigmoid(p.detach() / module.lambda_temperature) / module.lambda_temperature
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
            lam_old = raw_to_lambda(old, module.lambda_temperature)
            if module.is_pinned:
                p.copy_(old)
                continue
            lam_new = (lam_old + (p.detach() - old)).clamp_min(1.0 + MIN_LAMBDA_OFFSET)
            p.copy_(lambda_to_raw(lam_new, module.lambda_temperature).to(p.dtype))
        previous.clear()

    handle.hooks.append(optimizer.register_step_pre_hook(pre_step))
    handle.hooks.append(optimizer.register_step_post_hook(post_step))
    _INSTALLED[optimizer] = handle
    return handle


# -- one call for any Trainer ----------------------------------------------------------------
def create_lambda_gelu_optimizer(
    model: nn.Module,
    optimizer_cls: type[torch.optim.Optimizer],
    *,
    lr: float,
    lambda_learning_rate: float,
    weight_decay: float = 0.0,
    lambda_optimizer_family: str = "auto",
    decay_parameter_names: Iterable[str] | None = None,
    **optimizer_kwargs: Any,
) -> torch.optim.Optimizer:
    """An optimizer for a λ-GELU model: λ in its own group, stepped in λ-space (PEFT's ``create_loraplus_optimizer`` style).

    Pass it to any ``transformers.Trainer`` (or subclass: TRL's ``SFTTrainer``, your own) as
    ``optimizers=(optimizer, None)``, with a :class:`~hf_lambda_gelu.HardeningCallback` in ``callbacks``,
    then call :func:`~hf_lambda_gelu.reluize` on the trained model: that is the whole method.
    Build it on the model the Trainer trains: with PEFT, wrap the model first
    (:func:`~hf_lambda_gelu.add_lambda_modules_to_save`, ``get_peft_model``) rather than passing
    ``peft_config`` to the Trainer, which would wrap it after the optimizer took its parameters.

    Args:
        model: a model with λ-GELU activations (:func:`~hf_lambda_gelu.convert_to_lambda_gelu` first),
            PEFT-wrapped or not.
        optimizer_cls: the optimizer class, e.g. ``torch.optim.AdamW``.
        lr: learning rate of the weights.
        lambda_learning_rate: learning rate of λ, in λ units per step (≥ 0; e.g. 1e-2).
        weight_decay: weight decay of the weights (never of biases, norms or λ).
        lambda_optimizer_family: how ``optimizer_cls`` normalizes steps: ``"auto"`` (from the class name),
            ``"adaptive"`` (Adam-like) or ``"sgd"``.
        decay_parameter_names: names that get weight decay; default: like ``Trainer.get_decay_parameter_names``.
        **optimizer_kwargs: passed to ``optimizer_cls`` (``betas``, ``eps``, ``momentum``, ...).

    Returns:
        ``optimizer_cls`` built on :func:`lambda_param_groups`, with :func:`install_lambda_update` installed.

    Raises:
        NotLambdaGELUModelError: the model has no λ-GELU activation.
        LambdaOptimizerError: a negative ``lambda_learning_rate`` or an unknown optimizer family.

    >>> import torch
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> from hf_lambda_gelu import convert_to_lambda_gelu
    >>> model = convert_to_lambda_gelu(GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=1, vocab_size=16)))
    >>> optimizer = create_lambda_gelu_optimizer(model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=1e-2)
    >>> [group["lr"] for group in optimizer.param_groups if group.get("lambda_group")]
    [0.01]
    >>> # Trainer(model=model, args=args, train_dataset=data, optimizers=(optimizer, None),
    >>> #         callbacks=[HardeningCallback()]).train(); reluize(model)
    """
    if not lambda_modules(model):
        raise NotLambdaGELUModelError(type(model).__name__)
    groups = lambda_param_groups(
        model,
        lr=lr,
        lambda_learning_rate=lambda_learning_rate,
        weight_decay=weight_decay,
        decay_parameter_names=decay_parameter_names,
    )
    optimizer = optimizer_cls(groups, lr=lr, **optimizer_kwargs)
    install_lambda_update(optimizer, model, lambda_optimizer_family=lambda_optimizer_family)
    return optimizer

"""The one module walker every swap goes through (GELU → λ-GELU, λ-GELU → ReLU)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["FilterFn", "Swap", "swap_modules"]

FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class Swap:
    """One replaced module: its qualified name, the old and the new module."""

    name: str
    old: nn.Module
    new: nn.Module


def swap_modules(
    model: nn.Module,
    replace: Callable[[nn.Module, str], nn.Module | None],
    filter_fn: FilterFn | None = None,
) -> list[Swap]:
    """Replace submodules in place, in depth (registration) order.

    Args:
        model: the model to modify.
        replace: ``replace(module, qualified_name)`` returns the replacement, or ``None`` to keep it.
        filter_fn: optional ``filter_fn(module, qualified_name) -> bool``; modules it rejects are kept.

    Returns:
        The swaps made. A module object registered under several names is replaced everywhere
        by the same new module (so shared activations stay shared); ``filter_fn`` and ``replace``
        decide once per module object, at its first name in depth order.
    """
    swaps: list[Swap] = []
    replaced: dict[int, nn.Module] = {}
    kept: set[int] = set()
    for parent_name, parent in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if id(child) in kept:
                continue
            new = replaced.get(id(child))
            if new is None:
                if filter_fn is not None and not filter_fn(child, name):
                    kept.add(id(child))
                    continue
                new = replace(child, name)
                if new is None:
                    kept.add(id(child))
                    continue
                replaced[id(child)] = new
            parent._modules[child_name] = new
            swaps.append(Swap(name, child, new))
    return swaps

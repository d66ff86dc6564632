"""The module walker every swap goes through (hf_lambda_gelu/module_swap.py)."""

from __future__ import annotations

import torch
from torch import nn

from hf_lambda_gelu import swap_modules


class Block(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = act

    def forward(self, x):
        return self.act(self.fc(x))


def gelu_to_relu(calls: list[str] | None = None):
    def replace(module: nn.Module, name: str) -> nn.Module | None:
        if not isinstance(module, nn.GELU):
            return None
        if calls is not None:
            calls.append(name)
        return nn.ReLU()

    return replace


def test_swaps_inside_nested_containers_in_depth_order():
    model = nn.Sequential(
        nn.Linear(4, 4),
        nn.GELU(),
        nn.ModuleList([Block(nn.GELU()), nn.Sequential(nn.Linear(4, 4), nn.GELU())]),
        nn.ModuleDict({"head": Block(nn.GELU())}),
    )
    swaps = swap_modules(model, gelu_to_relu())
    assert [s.name for s in swaps] == ["1", "2.0.act", "2.1.1", "3.head.act"]
    assert not any(isinstance(m, nn.GELU) for m in model.modules())
    assert all(isinstance(s.old, nn.GELU) and isinstance(s.new, nn.ReLU) for s in swaps)
    for s in swaps:
        assert model.get_submodule(s.name) is s.new
    x = torch.randn(3, 4)
    assert torch.equal(model[1](x), torch.relu(x))


def test_shared_module_is_replaced_consistently():
    shared = nn.GELU()
    model = nn.Sequential(Block(shared), Block(shared), nn.ModuleList([shared]))
    calls: list[str] = []
    swaps = swap_modules(model, gelu_to_relu(calls))
    assert calls == ["0.act"], "replace() must run once per module object"
    assert [s.name for s in swaps] == ["0.act", "1.act", "2.0"]
    assert model[0].act is model[1].act is model[2][0]
    assert isinstance(model[0].act, nn.ReLU)


def test_filter_fn_is_respected_and_sees_qualified_names():
    model = nn.Sequential(Block(nn.GELU()), Block(nn.GELU()), nn.GELU())
    seen: list[tuple[str, str]] = []

    def keep_block_1(module: nn.Module, name: str) -> bool:
        seen.append((type(module).__name__, name))
        return name.startswith("1.")

    swaps = swap_modules(model, gelu_to_relu(), keep_block_1)
    assert [s.name for s in swaps] == ["1.act"]
    assert isinstance(model[1].act, nn.ReLU)
    assert isinstance(model[0].act, nn.GELU) and isinstance(model[2], nn.GELU)
    assert ("GELU", "0.act") in seen and ("GELU", "2") in seen and ("Linear", "0.fc") in seen


def test_shared_module_follows_the_filter_decision_for_its_first_name():
    """A shared module is either swapped everywhere or nowhere, whatever the order of its names."""
    for accepted in ("0.act", "1.act"):
        shared = nn.GELU()
        model = nn.Sequential(Block(shared), Block(shared))
        swap_modules(model, gelu_to_relu(), lambda m, n, accepted=accepted: n == accepted)
        assert model[0].act is model[1].act, f"sharing broken when filter_fn accepts only {accepted!r}"


def test_replace_returning_none_keeps_everything():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    before = list(model)
    assert swap_modules(model, lambda m, n: None) == []
    assert list(model) == before


def test_none_children_are_skipped():
    model = Block(nn.GELU())
    model.register_module("missing", None)
    swaps = swap_modules(model, gelu_to_relu())
    assert [s.name for s in swaps] == ["act"] and model.missing is None


def test_swapped_parameters_are_visible_to_the_model():
    """New modules with parameters register under the parent (optimizers and state_dict see them)."""
    model = nn.Sequential(Block(nn.GELU()), Block(nn.GELU()))
    swap_modules(model, lambda m, n: nn.PReLU() if isinstance(m, nn.GELU) else None)
    names = [n for n, _ in model.named_parameters()]
    assert "0.act.weight" in names and "1.act.weight" in names
    assert model.state_dict()["1.act.weight"].shape == (1,)

import pytest
import torch

from hf_lambda_gelu import LambdaGELU, install_lambda_update, lambda_param_groups
from hf_lambda_gelu.optim import optimizer_family

STEPS = 20
LR = 0.05


def _rise_rate(optimizer: str, lam0: float, scheme: bool) -> float:
    """Mean λ increase per step under a loss that always favors harder gates (fit ReLU)."""
    torch.manual_seed(0)
    x = torch.randn(4096) * 2
    act = LambdaGELU(lambda_init=lam0)
    model = torch.nn.Sequential(act)
    groups = lambda_param_groups(model, lr=LR, weight_decay=0.0, lambda_learning_rate=LR)
    opt = torch.optim.AdamW(groups) if optimizer == "adamw" else torch.optim.SGD(groups)
    if scheme:
        install_lambda_update(opt, model)
    start = act.lambda_.item()
    for _ in range(STEPS):
        opt.zero_grad()
        ((act(x) - torch.relu(x)) ** 2).mean().backward()
        opt.step()
    return (act.lambda_.item() - start) / STEPS


def test_scheme_rates_agree_across_optimizers_and_starting_points():
    rates = [_rise_rate(o, lam0, scheme=True) for o in ("adamw", "sgd") for lam0 in (1.0, 10.0)]
    assert min(rates) > 0
    assert max(rates) / min(rates) <= 2.0, rates
    # the step is set by the λ learning rate: of order LR per step
    assert 0.2 * LR <= min(rates) and max(rates) <= 1.5 * LR, rates


def test_naive_parameterization_rates_differ_by_orders_of_magnitude():
    rates = [_rise_rate(o, lam0, scheme=False) for o in ("adamw", "sgd") for lam0 in (1.0, 10.0)]
    assert max(rates) / max(min(rates), 1e-12) > 100, rates


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_lambda_never_leaves_one_to_infinity(optimizer):
    torch.manual_seed(0)
    x = torch.randn(1024)
    act = LambdaGELU(lambda_init=1.5)
    groups = lambda_param_groups(torch.nn.Sequential(act), lr=1.0, weight_decay=0.0, lambda_learning_rate=1.0)
    opt = torch.optim.AdamW(groups) if optimizer == "adamw" else torch.optim.SGD(groups, momentum=0.9)
    install_lambda_update(opt, act)
    for _ in range(30):  # loss favors softer gates with huge steps: λ must stop at 1
        opt.zero_grad()
        (-(act(x) - torch.relu(x)).pow(2).mean()).backward()
        opt.step()
        assert act.lambda_.item() >= 1.0
    assert act.lambda_.item() < 1.01


def test_pinned_lambda_is_not_moved_by_the_optimizer():
    act = LambdaGELU(lambda_init=3.0)
    opt = torch.optim.AdamW(
        lambda_param_groups(torch.nn.Sequential(act), lr=0.1, weight_decay=0.0, lambda_learning_rate=0.5)
    )
    install_lambda_update(opt, act)
    x = torch.randn(256)
    for pinned in (False, True):
        if pinned:
            act.pin(7.0)
        for _ in range(3):
            opt.zero_grad()
            act(x).pow(2).sum().backward()
            assert act.lambda_raw.grad is not None
            opt.step()
    torch.testing.assert_close(act.lambda_, torch.tensor([7.0]))


def test_sgd_state_is_kept_in_optimizer_state_for_checkpointing():
    act = LambdaGELU()
    opt = torch.optim.SGD(
        lambda_param_groups(torch.nn.Sequential(act), lr=0.1, weight_decay=0.0, lambda_learning_rate=0.1)
    )
    install_lambda_update(opt, act)
    act(torch.randn(16)).sum().backward()
    opt.step()
    state = opt.state_dict()["state"]
    assert any("lambda_grad_sq_avg" in s for s in state.values())


def test_optimizer_family_detection_and_errors():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert optimizer_family(torch.optim.Adam(p)) == "adaptive"
    assert optimizer_family(torch.optim.SGD(p, lr=0.1)) == "sgd"

    class Mystery(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

    with pytest.raises(ValueError, match="Mystery"):
        optimizer_family(Mystery(p))
    with pytest.raises(ValueError, match="family='bogus'"):
        install_lambda_update(torch.optim.SGD(p, lr=0.1), torch.nn.Identity(), lambda_optimizer_family="bogus")

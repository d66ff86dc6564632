"""The hardness-pressure term β·Σ_l c/λ_l (used by LambdaGELUTrainer's ``hardness_pressure``)."""

import pytest
import torch

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, LambdaGELU
from hf_lambda_gelu.hardness_pressure import hardness_pressure_term


def test_hardness_pressure_term_is_the_summed_bound_with_gradient_on_learning_lambda():
    model = torch.nn.Sequential(LambdaGELU(lambda_init=2.0), LambdaGELU(lambda_init=4.0, num_channels=3))
    term = hardness_pressure_term(model)
    assert term.item() == pytest.approx(RELU_DISTANCE_CONSTANT * (1 / 2 + 1 / 4), rel=1e-6)
    term.backward()
    assert all(m.lambda_raw.grad is not None and (m.lambda_raw.grad < 0).all() for m in model)  # pushes λ up
    model[0].pin()
    model.zero_grad()
    hardness_pressure_term(model).backward()
    assert torch.equal(model[0].lambda_raw.grad, torch.zeros(1))  # pinned: constant

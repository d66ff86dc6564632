"""One answer to "is this a GELU?": every place that asks classifies a module the way ``gelu_kinds`` does.

The places: conversion (converts exactly the GELUs λ-GELU reproduces; lists the activations it found
otherwise), the GELU-remnant probe (``gelu_modules``), the ONNX export's refusal (``check_relu_only``) and the
release gate's reload worker (``activation_types``, ``lambda_values``), which loads ``gelu_kinds.py`` by path.
"""

from __future__ import annotations

import ast
import copy
import subprocess
import sys

import pytest
from torch import nn
from transformers import activations
from transformers.models.bloom.modeling_bloom import BloomGelu

from hf_lambda_gelu import LambdaGELU, NoGELUFoundError, ReluModelRequiredError, convert_to_lambda_gelu
from hf_lambda_gelu import gelu_kinds as gelu_kinds_module
from hf_lambda_gelu.gelu_kinds import GELU, GELU_KINDS, GELU_LIKE, LAMBDA_GELU, OTHER, RELU, activation_kind
from hf_lambda_gelu.gelu_remnants import gelu_modules
from hf_lambda_gelu.release import reload_worker
from hf_lambda_gelu.release.export import check_relu_only


class MyGelu(nn.Module):
    """A model's own GELU class: not one λ-GELU is known to reproduce."""

    def forward(self, x):
        return nn.functional.gelu(x)


class SwishActivation(nn.Module):
    def forward(self, x):
        return nn.functional.silu(x)


EXPECTED = {
    "nn.GELU": (nn.GELU, GELU),
    "nn.GELU(tanh)": (lambda: nn.GELU(approximate="tanh"), GELU),
    "BloomGelu": (BloomGelu, GELU),
    "LambdaGELU": (LambdaGELU, LAMBDA_GELU),
    "LambdaGELU(tanh)": (lambda: LambdaGELU(approximate="tanh"), LAMBDA_GELU),
    "MyGelu": (MyGelu, GELU_LIKE),
    "nn.ReLU": (nn.ReLU, RELU),
    "nn.SiLU": (nn.SiLU, OTHER),
    "nn.Tanh": (nn.Tanh, OTHER),
    "nn.Sigmoid": (nn.Sigmoid, OTHER),
    "SwishActivation": (SwishActivation, OTHER),
    "nn.Linear": (lambda: nn.Linear(4, 4), None),
    "nn.LayerNorm": (lambda: nn.LayerNorm(4), None),
    "nn.MultiheadAttention": (lambda: nn.MultiheadAttention(4, 1), None),
    **{f"ACT2FN[{key}]": (lambda key=key: activations.ACT2FN[key], GELU) for key in
       ("gelu", "gelu_python", "gelu_new", "gelu_fast", "gelu_accurate", "gelu_pytorch_tanh", "gelu_python_tanh")},
    "ACT2FN[quick_gelu]": (lambda: activations.ACT2FN["quick_gelu"], GELU_LIKE),
    "ACT2FN[gelu_10]": (lambda: activations.ACT2FN["gelu_10"], GELU_LIKE),
    "ACT2FN[relu]": (lambda: activations.ACT2FN["relu"], RELU),
    "ACT2FN[relu2]": (lambda: activations.ACT2FN["relu2"], OTHER),
    "ACT2FN[silu]": (lambda: activations.ACT2FN["silu"], OTHER),
}  # fmt: skip
#: Every activation transformers builds from a config string, classified the same way everywhere.
EVERY_ACT2FN = {f"ACT2FN[{key}]": (lambda key=key: activations.ACT2FN[key]) for key in sorted(activations.ACT2CLS)}


@pytest.mark.parametrize("name", EXPECTED)
def test_each_module_has_the_expected_kind(name):
    build, kind = EXPECTED[name]
    assert activation_kind(build()) == kind


@pytest.mark.parametrize("name", sorted({**{n: b for n, (b, _) in EXPECTED.items()}, **EVERY_ACT2FN}))
def test_every_check_agrees_with_the_kind(name):
    build = EXPECTED[name][0] if name in EXPECTED else EVERY_ACT2FN[name]
    model = nn.Sequential(nn.Linear(4, 4), build())
    kind = activation_kind(model[1])
    cls = type(model[1]).__name__

    # the remnant probe and conversion: exactly the GELUs λ-GELU reproduces are converted
    assert ("1" in gelu_modules(model)) == (kind == GELU)
    converted = copy.deepcopy(model)
    if kind == GELU:
        convert_to_lambda_gelu(converted)
        assert activation_kind(converted[1]) == LAMBDA_GELU
    else:
        with pytest.raises(NoGELUFoundError) as info:
            convert_to_lambda_gelu(converted)
        assert (cls in info.value.found) == (kind is not None)  # the activations found are listed, nothing else

    # the export: a model with any GELU kind is refused
    if kind in GELU_KINDS:
        with pytest.raises(ReluModelRequiredError, match=cls):
            check_relu_only(model)
    else:
        check_relu_only(model)

    # the reload worker: which modules the gate compares, and which hold λ
    assert reload_worker.activation_types(model).get("1") == (cls if kind is not None else None)
    assert ("1" in reload_worker.lambda_values(model)) == (kind == LAMBDA_GELU)


def test_the_classifier_imports_nothing_of_the_package():
    tree = ast.parse(open(gelu_kinds_module.__file__, encoding="utf-8").read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "torch"}, imported


@pytest.mark.slow
def test_the_reload_worker_classifies_in_a_fresh_process_without_the_package():
    """The worker, run as the gate runs it (a script by path), gets the same kinds and never imports the package."""
    code = (
        "import runpy, sys\n"
        "worker = runpy.run_path(sys.argv[1])\n"
        "from torch import nn\n"
        "from transformers import activations\n"
        "model = nn.Sequential(nn.Linear(4, 4), activations.ACT2FN['gelu_new'], activations.ACT2FN['quick_gelu'],\n"
        "                      nn.ReLU(), nn.SiLU(), nn.LayerNorm(4))\n"
        "assert 'hf_lambda_gelu' not in sys.modules, 'package imported'\n"
        "print(sorted(worker['activation_types'](model).items()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, reload_worker.__file__], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    model = nn.Sequential(
        nn.Linear(4, 4), activations.ACT2FN["gelu_new"], activations.ACT2FN["quick_gelu"], nn.ReLU(), nn.SiLU()
    )
    expected = sorted((name, type(m).__name__) for name, m in model.named_children() if activation_kind(m))
    assert out.strip() == str(expected)

"""The architecture matrix: convert, λ = 170, save, reluize, save; every reload (stock and λ) in one worker request.

Also the refusals (quick_gelu, SiLU, ReLU, BLOOM's hard-coded BloomGelu) and the gate's own failure
message, on a release whose config was left GELU (what the package did before the field table).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from arch_matrix import ARCHS, NOT_GELU, NOTHING_CONTROLLED, REMNANT_CASES, build

from hf_lambda_gelu import LambdaGELU, LambdaGELUConfig, NoGELUFoundError, convert_to_lambda_gelu, reluize
from hf_lambda_gelu.errors import ReleaseReloadError, UncontrolledGELUError
from hf_lambda_gelu.release.gate import ReloadCase, check_reload, dummy_inputs, verify_reloads

GELU_CASES = [name for name in ARCHS if name not in NOT_GELU + NOTHING_CONTROLLED]
#: case → what the functional probe must find (registered module → kind)
FUNCTIONAL = {
    "whisper": {"encoder": "functional gelu call"},
    "deberta_v2": {"pooler": "GELUActivation built during forward"},
}


def _set_lambda(model, value: float) -> None:
    for module in model.modules():
        if isinstance(module, LambdaGELU):
            module.set_lambda(value)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Every GELU case: the λ-GELU model (λ = 170) and its ReLU copy, saved; results of ONE reload request."""
    root = tmp_path_factory.mktemp("matrix")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 50 tiny forwards: thread start-up dominates on a shared 2-core machine
    cases, reports, originals = [], {}, {}
    for name in GELU_CASES:
        model = build(name)
        originals[name] = copy.deepcopy(model)
        convert_to_lambda_gelu(model, LambdaGELUConfig(lambda_temperature=0.2))  # a non-default τ must round-trip too
        _set_lambda(model, 170.0)
        model.save_pretrained(root / f"{name}-lambda")
        relu = copy.deepcopy(model)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # λ = 170 is hardened: no UnhardenedSwapWarning
            reports[name] = reluize(relu)
        relu.save_pretrained(root / f"{name}-relu")
        cases += [
            ReloadCase(relu, root / f"{name}-relu"),
            ReloadCase(model, root / f"{name}-lambda", with_package=True),
        ]
    # the pre-table bug: DistilBERT's `activation` field left GELU — the gate must catch it and name the modules
    broken = build("distilbert")
    convert_to_lambda_gelu(broken)
    _set_lambda(broken, 170.0)
    reluize(broken)
    broken.config.activation = "gelu"
    broken.save_pretrained(root / "broken")
    cases.append(ReloadCase(broken, root / "broken"))
    results = verify_reloads(cases)
    torch.set_num_threads(threads)
    return {
        "results": dict(zip([str(c.folder.name) for c in cases], results)),
        "reports": reports,
        "root": root,
        "originals": originals,
    }


@pytest.mark.parametrize("name", GELU_CASES)
def test_relu_release_reloads_as_relu_in_stock_transformers(matrix, name):
    result = matrix["results"][f"{name}-relu"]
    assert result.error is None, result.error
    assert result.ok, result.describe()
    assert result.max_rel_diff <= 1e-4
    report = matrix["reports"][name]
    assert report.swapped and report.unhardened is False
    assert result.functional_gelus == FUNCTIONAL.get(name, {})
    # hard-coded GELU modules stay GELU (never converted), and are reported
    expected = {"classifier.activation": "GELUActivation"} if name == "electra_classifier" else {}
    assert report.gelu_remnants == expected
    assert (name in REMNANT_CASES) == bool(result.functional_gelus or report.gelu_remnants)


@pytest.mark.parametrize("name", GELU_CASES)
def test_lambda_gelu_checkpoint_restores_lambda(matrix, name):
    result = matrix["results"][f"{name}-lambda"]
    assert result.ok, result.describe()
    assert not result.unexpected_keys  # λ weights were used, not dropped


@pytest.mark.parametrize("name", GELU_CASES)
def test_conversion_at_lambda_one_keeps_outputs(matrix, name):
    """λ = 1 reproduces every flavor (BloomGelu aside: not convertible), nested configs included."""
    original = matrix["originals"][name]
    model = copy.deepcopy(original)
    convert_to_lambda_gelu(model)
    inputs = dummy_inputs(model)
    with torch.no_grad():
        want, got = original(**inputs), model(**inputs)
    first = next(k for k, v in want.items() if isinstance(v, torch.Tensor) and v.is_floating_point())
    torch.testing.assert_close(got[first], want[first], atol=1e-4, rtol=1e-4)


def test_gate_names_the_modules_that_came_back_non_relu(matrix):
    result = matrix["results"]["broken"]
    assert not result.ok and result.max_rel_diff > 1e-4
    assert "distilbert.transformer.layer.0.ffn.activation: ReLU in memory, GELUActivation after reload" in (
        result.describe()
    )
    error = ReleaseReloadError("broken", result.describe())
    assert "ffn.activation" in str(error) and "ACTIVATION_FIELDS" in str(error)


def test_check_reload_raises_on_a_mismatch(matrix):
    broken = build("distilbert")
    convert_to_lambda_gelu(broken)
    _set_lambda(broken, 170.0)
    reluize(broken)  # in memory ReLU; the λ-GELU folder saved earlier is not this model
    with pytest.raises(ReleaseReloadError, match=r"ffn\.activation: ReLU in memory, LambdaGELU after reload"):
        check_reload(broken, matrix["root"] / "distilbert-lambda", with_package=True)


@pytest.mark.parametrize("name", NOT_GELU)
def test_non_gelu_models_are_refused_clearly(name):
    with pytest.raises(NoGELUFoundError, match="No GELU activation to convert") as info:
        convert_to_lambda_gelu(build(name))
    assert not isinstance(info.value, UncontrolledGELUError)
    found = {"clip_quick_gelu": "QuickGELUActivation", "bert_silu": "SiLUActivation", "bert_relu": "ReLU"}[name]
    assert found in str(info.value)


def test_bloom_hard_coded_gelu_is_refused_by_name():
    model = build("bloom")
    with pytest.raises(UncontrolledGELUError, match=r"transformer\.h\.0\.mlp\.gelu_impl \(BloomGelu\)"):
        convert_to_lambda_gelu(model)
    assert not any(isinstance(m, LambdaGELU) for m in model.modules())  # nothing half-converted

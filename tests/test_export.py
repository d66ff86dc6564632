"""ONNX export of ReLU releases: graph audit (no GELU op, MLP ReLUs as Relu), ONNX Runtime parity, release update.

Tiny BERT / ViT / GPT-2 releases at the exporter's default opset and at opset 18 (below 20, where
GELU would be spelled with ``Erf``), the real all-MiniLM-L6-v2 release through the CLI, refusals.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from helpers import make_image_inputs, make_text_inputs, tiny_bert_config, tiny_gpt2_config, tiny_vit_config
from huggingface_hub import ModelCard
from torch import nn
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    GPT2LMHeadModel,
    ViTForImageClassification,
)

import hf_lambda_gelu
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import ReluModelRequiredError
from hf_lambda_gelu.release.card import set_card_section
from hf_lambda_gelu.release.export import (
    AUDIT_FILENAME,
    INT8_FILENAME,
    ONNX_FILENAME,
    ExportAuditError,
    export_onnx,
    export_release,
)
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, add_release_files, check_release_dir

RELEASES = {
    # name: (model class, config factory, expected MLP activation modules, expected other activations)
    "bert": (
        BertForSequenceClassification,
        lambda: tiny_bert_config(num_labels=2),
        [
            "bert.encoder.layer.0.intermediate.intermediate_act_fn",
            "bert.encoder.layer.1.intermediate.intermediate_act_fn",
        ],
        {"bert.pooler.activation": ["Tanh"]},
    ),
    "vit": (
        ViTForImageClassification,
        tiny_vit_config,
        ["vit.layers.0.mlp.activation_fn", "vit.layers.1.mlp.activation_fn"],
        {},
    ),
    "gpt2": (GPT2LMHeadModel, tiny_gpt2_config, ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"], {}),
}


def make_release(name: str, folder, seed: int = 0):
    """A ReLU release of a tiny random model: λ-GELU at λ = 170, swapped and saved by save_release."""
    cls, config, _, _ = RELEASES[name]
    torch.manual_seed(seed)
    model = hf_lambda_gelu.convert_to_lambda_gelu(
        cls(config()).eval(), hf_lambda_gelu.LambdaGELUConfig(lambda_init=170.0)
    )
    hf_lambda_gelu.save_release(model, folder)
    return folder


def onnx_ops(path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "opset", "int8"), [("bert", None, True), ("vit", 18, False), ("gpt2", 18, False)])
def test_export_release_audits_and_matches_pytorch(tmp_path, name, opset, int8):
    release, out = make_release(name, tmp_path / "release"), tmp_path / "onnx"
    audit = export_release(release, out, opset=opset, int8=int8)
    _, _, mlp, other = RELEASES[name]

    assert audit["passed"] and audit["problems"] == []
    assert audit["opset"] == (opset or 20)
    assert audit["forbidden_ops_found"] == {}
    assert audit["mlp_activations"] == {module: ["Relu"] for module in mlp}
    assert audit["other_activations"] == other
    assert audit["parity"]["max_abs_diff"] <= 1e-4
    # The graph itself, read independently of the audit.
    ops = onnx_ops(out / ONNX_FILENAME)
    assert not {"Erf", "Gelu", "FastGelu"} & set(ops)
    assert ops.count("Relu") == len(mlp)
    assert [o.version for o in onnx.load(str(out / ONNX_FILENAME)).opset_import if o.domain == ""] == [opset or 20]
    # ONNX Runtime on a batch of another size and length (dynamic axes) matches the released model.
    model = RELEASES[name][0].from_pretrained(release)
    inputs = make_image_inputs(batch=3, seed=5) if name == "vit" else make_text_inputs(batch=3, seq=9, seed=5)
    session = onnxruntime.InferenceSession(str(out / ONNX_FILENAME), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        want = model.eval()(**inputs).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    if int8:  # a quantized graph (integer matmuls), still without any GELU op
        ops = onnx_ops(out / INT8_FILENAME)
        assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops and ops.count("Relu") == len(mlp)
        assert not {"Erf", "Gelu", "FastGelu"} & set(ops) and audit["int8"]["forbidden_ops_found"] == {}
        assert 0.0 <= audit["int8"]["argmax_agreement"] <= 1.0 and audit["int8"]["max_abs_diff_vs_pytorch"] < 1.0
    else:
        assert audit["int8"] is None and not (out / INT8_FILENAME).exists()
    # The release carries the audit: JSON, card section, manifest.
    assert json.loads((release / AUDIT_FILENAME).read_text()) == audit
    assert AUDIT_FILENAME in check_release_dir(release)
    card = ModelCard.load(release / "README.md").text
    section = card.split("### ONNX export", 1)[1].split("\n## ", 1)[0]
    assert f"| MLP activations exported as `Relu` | {len(mlp)} of {len(mlp)} |" in section
    assert card.index("## Deployment") < card.index("### ONNX export") < card.index("## Limitations")


@pytest.mark.slow
def test_real_minilm_release_exports_through_the_cli_and_gets_its_sparsity(minilm_path, tmp_path, capsys):
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm_path, num_labels=2).eval()
    hf_lambda_gelu.convert_to_lambda_gelu(
        model, hf_lambda_gelu.LambdaGELUConfig(lambda_init=170.0)
    )  # "hardened"; save_release swaps to ReLU
    release, out = tmp_path / "minilm-relu", tmp_path / "onnx"
    hf_lambda_gelu.save_release(model, release, processing_class=AutoTokenizer.from_pretrained(minilm_path))

    assert main(["export", str(release), str(out), "--int8"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "MLP activations as Relu: 6 of 6" in printed and "'bert.pooler.activation': ['Tanh']" in printed
    assert f"int8: {out / INT8_FILENAME}" in printed
    audit = json.loads((out / AUDIT_FILENAME).read_text())
    assert audit["passed"] and audit["forbidden_ops_found"] == {} and audit["parity"]["max_abs_diff"] <= 1e-4
    assert audit["parity"]["batch"].startswith("the release's tokenizer")
    assert len(audit["mlp_activations"]) == 6 and onnx_ops(out / ONNX_FILENAME).count("Relu") == 6
    assert json.loads((release / AUDIT_FILENAME).read_text()) == audit

    data = tmp_path / "texts.txt"
    data.write_text("a wonderful, moving film\nthe plot was dull and far too long\nok\n")
    assert main(["sparsity", str(release), "--data", str(data), "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "bert.encoder.layer.5.intermediate.intermediate_act_fn" in printed
    sparsity = json.loads((release / "activation_sparsity.json").read_text())
    assert sparsity["batch_size"] == 2 and len(sparsity["layers"]) == 6
    assert 0.5 < sparsity["mean_token_sparsity"] < 1.0  # ReLU MLPs of a real model: most neurons are off
    files = check_release_dir(release)
    assert {"activation_sparsity.json", "activation_sparsity.png", AUDIT_FILENAME} <= set(files)
    card = ModelCard.load(release / "README.md").text
    assert "### ONNX export" in card and "### Activation sparsity" in card and "](activation_sparsity.png)" in card
    assert "| int8 (`model.int8.onnx`, ONNX Runtime dynamic quantization) | GELU nodes: none; `Relu` × 6;" in card


def test_gelu_and_lambda_gelu_models_are_refused_with_the_release_command(tmp_path, capsys):
    torch.manual_seed(0)
    gelu = BertForSequenceClassification(tiny_bert_config(num_labels=2)).eval()
    with pytest.raises(ReluModelRequiredError, match=r"hf-lambda-gelu reluize SRC DST") as info:
        export_onnx(gelu, tmp_path / "gelu")
    assert "hidden_act='gelu'" in str(info.value) and "GELUActivation" in str(info.value)
    assert not (tmp_path / "gelu").exists()

    checkpoint = tmp_path / "lambda"
    hf_lambda_gelu.convert_to_lambda_gelu(gelu).save_pretrained(checkpoint)
    capsys.readouterr()  # save_pretrained's own progress bar is not the CLI's output
    assert main(["export", str(checkpoint), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-lambda-gelu: error: ") and "\n" not in err
    assert "hidden_act='lambda_gelu'" in err and "hf-lambda-gelu reluize SRC DST" in err
    assert not (tmp_path / "out").exists()


class _ErfActivation(nn.Module):
    """An activation the name check does not catch: its Erf must be caught by the graph audit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.erf(x)


@pytest.mark.slow
def test_audit_fails_on_an_erf_left_in_the_graph(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=2, hidden_act="relu")).eval()
    model.bert.encoder.layer[1].intermediate.intermediate_act_fn = _ErfActivation()
    with pytest.raises(ExportAuditError, match="1 Erf node") as info:
        export_onnx(model, tmp_path)
    audit = json.loads((tmp_path / AUDIT_FILENAME).read_text())
    assert not audit["passed"] and audit["forbidden_ops_found"] == {"Erf": 1}
    assert audit["other_activations"] == {
        "bert.encoder.layer.1.intermediate.intermediate_act_fn": ["Erf"],
        "bert.pooler.activation": ["Tanh"],
    }
    assert info.value.problems == ["1 Erf node(s) in the graph"]


@pytest.mark.parametrize(("kwargs", "message"), [({"opset": 17}, "opset=17"), ({"atol": 0.0}, "atol=0.0")])
def test_bad_export_arguments(tmp_path, kwargs, message):
    model = BertForSequenceClassification(tiny_bert_config(num_labels=2, hidden_act="relu"))
    with pytest.raises(ValueError, match=message):
        export_onnx(model, tmp_path, **kwargs)


# -- the helpers that add results to a release (used by export and sparsity) ------------------------
OLD_CARD = """---
license: mit
---

# old-release

```python
## not a heading: inside a code block
```

## Limitations

- none
"""


def test_set_card_section_adds_under_deployment_then_replaces():
    text = set_card_section(OLD_CARD, "### ONNX export", "first")
    assert text.index("## Deployment") < text.index("### ONNX export\n\nfirst") < text.index("## Limitations")
    assert "## not a heading: inside a code block" in text  # fenced lines are not section boundaries
    text = set_card_section(text, "### Activation sparsity", "| a |\n|---|")
    text = set_card_section(text, "### ONNX export", "second")
    assert text.count("### ONNX export") == 1 and "first" not in text and "second" in text
    assert text.count("## Deployment") == 1
    assert text.index("### ONNX export") < text.index("### Activation sparsity") < text.index("## Limitations")


@pytest.mark.slow
def test_add_release_files_updates_the_manifest_only_of_a_release(tmp_path):
    release = make_release("vit", tmp_path / "release")
    (release / "extra.json").write_text("{}")
    files = add_release_files(release, ["extra.json"])
    assert "extra.json" in files and json.loads((release / MANIFEST_FILENAME).read_text())["files"] == files
    assert add_release_files(release, ["extra.json"]) == files  # idempotent
    with pytest.raises(FileNotFoundError, match="missing.json"):
        add_release_files(release, ["missing.json"])
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("a")
    assert add_release_files(plain, ["a.txt"]) == ["a.txt"] and not (plain / MANIFEST_FILENAME).exists()

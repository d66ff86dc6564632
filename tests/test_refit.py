"""The refit: least-squares refit of every MLP down-projection after the GELU → ReLU swap, on each family."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from arch_matrix import build
from tiny_data import VOCAB, text_dataset, tiny_bert
from transformers import default_data_collator

from hf_lambda_gelu import (
    RelufyArguments,
    SingularCalibrationError,
    UnsupportedRefitError,
    gelu_to_relu,
    refit_down_projections,
    relufy,
)
from hf_lambda_gelu.distillation import frozen_copy
from hf_lambda_gelu.release.gate import dummy_inputs

#: The families the issue names: BERT-style, ViT/DeiT, GPT-2's Conv1D, NeoX, Phi, Falcon, gated GELU (T5, Gemma).
FAMILIES = ["bert", "roberta", "electra_pretraining", "vit", "deit", "gpt2", "gpt_neox", "phi", "falcon",
            "t5_gated_gelu", "gemma"]  # fmt: skip
#: (family, its down-projection in block 0) — what the trace must find.
DOWN_PROJECTIONS = {
    "bert": "bert.encoder.layer.0.output.dense",
    "vit": "vit.layers.0.mlp.fc2",
    "gpt2": "transformer.h.0.mlp.c_proj",
    "gpt_neox": "gpt_neox.layers.0.mlp.dense_4h_to_h",
    "falcon": "transformer.h.0.mlp.dense_4h_to_h",
    "t5_gated_gelu": "encoder.block.0.layer.1.DenseReluDense.wo",
    "gemma": "model.layers.0.mlp.down_proj",
}


#: GELUs outside the blocks (prediction heads): swapped, not refit.
HEAD_ACTIVATIONS = {
    "bert": ["cls.predictions.transform.transform_act_fn"],
    "electra_pretraining": ["discriminator_predictions.activation"],
}


def _hidden_states(model, batch):
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out.decoder_hidden_states if getattr(out, "decoder_hidden_states", None) is not None else out.hidden_states


def _swap_and_refit(name, batches, **kwargs):
    model = build(name)
    teacher = frozen_copy(model)
    naive = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gelu_to_relu(naive)
    twin = copy.deepcopy(naive)
    report = refit_down_projections(twin, teacher, batches, progress=False, **kwargs)
    return teacher, naive, twin, report


@pytest.mark.parametrize("name", FAMILIES)
def test_refit_brings_every_layer_closer_than_the_naive_swap(name):
    model = build(name)
    batches = [dummy_inputs(model, batch_size=8, seq_len=16, seed=s) for s in range(10)]
    teacher, naive, twin, report = _swap_and_refit(name, batches)
    assert report.layers and report.not_refit == HEAD_ACTIVATIONS.get(name, [])
    if name in DOWN_PROJECTIONS:
        assert report.layers[0].name == DOWN_PROJECTIONS[name]
    for layer in report.layers:
        assert layer.error_after < layer.error_before, layer
        assert layer.tokens > 0
    held_out = dummy_inputs(model, batch_size=8, seq_len=16, seed=99)
    t, n, r = (_hidden_states(m, held_out) for m in (teacher, naive, twin))
    for depth, (ht, hn, hr) in enumerate(zip(t, n, r)):
        if depth == 0:
            continue  # the embeddings: the same in all three
        assert (hr - ht).norm() < (hn - ht).norm(), f"layer {depth}"
    # the swap stays a ReLU model; only down-projections changed
    changed = {k for k, v in twin.state_dict().items() if not torch.equal(v, naive.state_dict()[k])}
    refit = {layer.name for layer in report.layers}
    assert changed and {k.rsplit(".", 1)[0] for k in changed} <= refit


def test_a_shared_layer_is_refused_naming_the_family():
    with pytest.raises(UnsupportedRefitError, match="'albert'.*more than once per forward"):
        _swap_and_refit("albert", [dummy_inputs(build("albert"), batch_size=4, seq_len=8)])


def test_a_head_activation_is_swapped_without_refit_and_reported():
    model = build("bert")  # BertForMaskedLM: the prediction head's transform has a GELU outside the blocks
    _, _, _, report = _swap_and_refit("bert", [dummy_inputs(model, batch_size=4, seq_len=8)])
    assert report.not_refit == ["cls.predictions.transform.transform_act_fn"]


def test_too_little_calibration_data_is_refused():
    one = [{"input_ids": torch.randint(5, 60, (1, 4))}]  # 4 tokens for 24 + 1 unknowns
    with pytest.raises(SingularCalibrationError, match="output.dense.*4 calibration tokens.*ridge 0"):
        _swap_and_refit("bert", one, ridge=0.0)
    # the default ridge makes the same system solvable
    _, _, _, report = _swap_and_refit("bert", one)
    assert report.layers[0].tokens == 4


def test_padding_is_masked_out_of_the_statistics():
    """Sequences padded into one batch refit exactly as the same sequences in unpadded batches of their own."""
    torch.manual_seed(0)
    lengths = [10, 6, 9, 4, 8, 7, 10, 5]  # 59 tokens for 24 + 1 unknowns per layer: a well-posed system
    sequences = [torch.randint(5, 60, (1, n)) for n in lengths]
    padded = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(padded)
    for row, seq in enumerate(sequences):
        padded[row, : seq.shape[1]], mask[row, : seq.shape[1]] = seq[0], 1
    twins = [
        _swap_and_refit("bert", batches)[2]
        for batches in ([{"input_ids": padded, "attention_mask": mask}], [{"input_ids": s} for s in sequences])
    ]
    for (name, a), b in zip(twins[0].state_dict().items(), twins[1].state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_rows_pooled_into_several_products_refit_as_one_product(monkeypatch):
    """The statistics pool batches' rows into products of ``_PRODUCT_ROWS`` rows: any pooling gives the same refit."""
    batches = [
        {"input_ids": torch.randint(5, 60, (2, 9), generator=torch.Generator().manual_seed(s))} for s in range(6)
    ]
    one = _swap_and_refit("bert", batches)[2]  # 108 rows: one product per layer
    monkeypatch.setattr("hf_lambda_gelu.refit._PRODUCT_ROWS", 20)  # a product every second batch, one left at the end
    several = _swap_and_refit("bert", batches)[2]
    for (name, a), b in zip(one.state_dict().items(), several.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_model_keeps_its_dtype_and_float64_statistics():
    model = build("gpt2").to(torch.bfloat16)
    teacher = frozen_copy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gelu_to_relu(model)
    report = refit_down_projections(model, teacher, [dummy_inputs(model, batch_size=8, seq_len=16, seed=s) for s in range(4)], progress=False)  # fmt: skip
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(layer.error_after < layer.error_before for layer in report.layers)


def _args(tmp_path, **overrides) -> RelufyArguments:
    defaults = dict(
        output_dir=str(tmp_path / "work"), road="refit", per_device_train_batch_size=8, report_to="none",
        save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
    )  # fmt: skip
    return RelufyArguments(**{**defaults, **overrides})


def test_relufy_refit_only_takes_no_gradient_step_and_records_the_refit(tmp_path):
    model = tiny_bert(initializer_range=0.2).eval()
    data, held_out = text_dataset(96, seed=0), text_dataset(48, seed=1)
    twin, report = relufy(model, data, _args(tmp_path, max_steps=0, calibration_size=64), eval_dataset=held_out,
                          data_collator=default_data_collator)  # fmt: skip
    naive = copy.deepcopy(model)
    gelu_to_relu(naive)
    assert twin.config.hidden_act == "relu"
    training = report.training
    assert training["road"] == "refit" and training["steps"] == 0 and training["train_loss"] is None
    assert training["calibration_examples"] == 64 and training["refit_seconds"] > 0
    assert [layer["name"] for layer in training["refit"]["layers"]] == [f"bert.encoder.layer.{i}.output.dense" for i in (0, 1)]  # fmt: skip
    x = {"input_ids": torch.randint(1, VOCAB, (16, 8))}
    with torch.no_grad():
        kl = [torch.nn.functional.kl_div(m(**x).logits.log_softmax(-1), model(**x).logits.softmax(-1), reduction="batchmean") for m in (twin, naive)]  # fmt: skip
    assert kl[0] < kl[1]


def test_relufy_defaults_are_the_refit_alone_and_one_epoch_on_the_roads_that_distil(tmp_path):
    """No epochs or steps given: the refit road takes no step (the CLI's default too), the swap road one epoch."""
    model = tiny_bert(initializer_range=0.2).eval()
    data, held_out = text_dataset(96, seed=0), text_dataset(16, seed=1)
    steps = {}
    for road in ("refit", "swap"):
        args = RelufyArguments(output_dir=str(tmp_path / road), road=road, per_device_train_batch_size=8,
                               report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)  # fmt: skip
        _, report = relufy(model, data, args, eval_dataset=held_out, data_collator=default_data_collator)
        steps[road] = report.training["steps"]
    assert steps == {"refit": 0, "swap": 12}


def test_relufy_refit_then_distil_keeps_the_better_of_the_two(tmp_path):
    model = tiny_bert(initializer_range=0.2).eval()
    data = text_dataset(96, seed=0)
    # a learning rate that wrecks the twin: the refit must be kept, and the record says so
    twin, report = relufy(model, data, _args(tmp_path, max_steps=8, learning_rate=1.0, calibration_size=64),
                          eval_dataset=text_dataset(32, seed=1), data_collator=default_data_collator)  # fmt: skip
    training = report.training
    assert training["kept"] == "refit" and training["steps"] == 8
    assert training["selection_examples"] == 9 and training["train_examples"] == 87
    assert training["selection"]["refit"] > training["selection"]["refit → distil"]
    # the refit it kept is the refit alone's, same seed and data: refit → distil is never below the refit alone
    refit_only, _ = relufy(model, data, _args(tmp_path, max_steps=0, calibration_size=64), data_collator=default_data_collator)  # fmt: skip
    for (name, a), b in zip(twin.state_dict().items(), refit_only.state_dict().values()):
        assert torch.equal(a, b), name


def test_refit_settings_are_validated():
    with pytest.raises(ValueError, match="calibration_size"):
        RelufyArguments(output_dir="x", calibration_size=0)
    with pytest.raises(ValueError, match="refit_ridge"):
        RelufyArguments(output_dir="x", refit_ridge=float("nan"))


def test_cli_refit_only_release_card_and_report(tmp_path, capsys):
    """``relufy --road refit --max-steps 0``: training-free, and the card and report say so."""
    from test_relufy_cli import _classifier_dir, _csv, _texts

    from hf_lambda_gelu.cli import main
    from hf_lambda_gelu.release.folder import check_release_dir
    from hf_lambda_gelu.release.twin import FIDELITY_FILENAME

    model_dir = _classifier_dir(tmp_path)
    data, held_out = _texts(tmp_path / "train.txt", 80), _csv(tmp_path / "eval.csv", 24, seed=1)
    out = tmp_path / "out"
    argv = [model_dir, out, "--data", data, "--eval-data", held_out, "--label-column", "label", "--road", "refit"]
    assert main(["relufy", *map(str, argv), "--max-steps", "0", "--calibration-size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "relufy: road refit · least-squares refit on 32 of 80 inputs · no training · device cpu" in printed
    assert "refit road, 0 steps" in printed
    report = json.loads((out / FIDELITY_FILENAME).read_text())
    training = report["training"]
    assert training["road"] == "refit" and training["steps"] == 0 and training["calibration_examples"] == 32
    assert training["refit_seconds"] > 0 and len(training["refit"]["layers"]) == 2
    card = (out / "README.md").read_text()
    assert "refit by least squares on 32 unlabeled calibration inputs" in card and "with no gradient step" in card
    assert "**Refit:** 2 MLP down-projections, on 32 calibration inputs" in card
    assert "**Distillation:** none (0 steps)" in card and "for 0 steps" not in card
    assert FIDELITY_FILENAME in check_release_dir(out)
    # the same zero steps on the swap road would be the naive swap: refused, nothing written
    naive = [str(model_dir), str(tmp_path / "naive"), "--data", str(data), "--max-steps", "0", "--road", "swap"]
    assert main(["relufy", *naive]) == 1
    assert "--road refit" in capsys.readouterr().err and not (tmp_path / "naive").exists()

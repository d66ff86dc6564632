"""Activation sparsity: hand-computed figures, padding masked, refusals, plot, CLI on a tiny release."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import make_text_inputs, tiny_bert_config, tiny_gpt2_config, wordpiece_tokenizer
from torch import nn
from transformers import BertModel, GPT2LMHeadModel

import hf_lambda_gelu
from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import ReluModelRequiredError
from hf_lambda_gelu.release.sparsity import measure_sparsity, save_sparsity_plot


class _TwoReLUs(nn.Module):
    """Returns ReLU(x) and ReLU(-x): known zeros for a hand-computed check."""

    def __init__(self) -> None:
        super().__init__()
        self.pos, self.neg = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.pos(x) + self.neg(-x)


def test_hand_computed_per_token_and_aggregated_sparsity():
    x = torch.tensor(
        [
            [[-1.0, 2.0, -3.0, 4.0], [-1.0, 1.0, 1.0, -1.0], [5.0, 5.0, 5.0, 5.0]],  # last token is padding
            [[-2.0, -2.0, 0.0, 3.0], [-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0]],
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    batches = [{"x": x[:1], "attention_mask": mask[:1]}, {"x": x[1:], "attention_mask": mask[1:]}]
    report = measure_sparsity(_TwoReLUs(), batches, data="hand-made")
    pos, neg = report.layers
    assert (pos.name, neg.name, pos.neurons, pos.tokens, pos.batches) == ("pos", "neg", 4, 5, 2)
    # ReLU(x) zeros per valid token: 2/4, 2/4 | 3/4, 4/4, 0/4 (the padded [5, 5, 5, 5] is left out).
    per_token = [0.5, 0.5, 0.75, 1.0, 0.0]
    assert pos.token_mean == pytest.approx(sum(per_token) / 5)
    mean = sum(per_token) / 5
    assert pos.token_std == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in per_token) / 4))
    assert (pos.token_min, pos.token_max) == (0.0, 1.0)
    # Whole batch: batch 1 neuron 0 is zero for both valid tokens (1/4); batch 2 none (the all-ones token).
    assert pos.aggregated == pytest.approx((0.25 + 0.0) / 2)
    # ReLU(-x): zeros where x ≥ 0: 2/4, 2/4 | 2/4 (x = 0 counts: ReLU(-0) = 0), 0/4, 4/4.
    assert neg.token_mean == pytest.approx((0.5 + 0.5 + 0.5 + 0.0 + 1.0) / 5)
    assert neg.aggregated == pytest.approx((0.25 + 0.0) / 2)  # neuron 1 (2, 1) in batch 1
    assert report.tokens == 5 and report.batch_size == 1
    assert report.mean_token_sparsity == pytest.approx((pos.token_mean + neg.token_mean) / 2)
    assert "| `pos` | 4 |" in report.to_markdown()


def test_padding_is_left_out_on_a_real_model():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(tiny_gpt2_config(activation_function="relu")).eval()
    batch = make_text_inputs(batch=2, seq=7)
    other_padding = {**batch, "input_ids": batch["input_ids"].clone()}
    other_padding["input_ids"][-1, -2:] = 3  # change only tokens under attention_mask == 0
    a, b = measure_sparsity(model, [batch]), measure_sparsity(model, [other_padding])
    assert a.to_dict() == b.to_dict() and a.tokens == 12
    unmasked = measure_sparsity(model, [{"input_ids": other_padding["input_ids"]}])
    assert unmasked.tokens == 14 and unmasked.to_dict() != a.to_dict()
    assert all(0.0 < layer.token_mean < 1.0 for layer in a.layers)


def test_refuses_gelu_and_models_without_relu(tmp_path):
    with pytest.raises(ReluModelRequiredError, match="hf-lambda-gelu reluize"):
        measure_sparsity(BertModel(tiny_bert_config()), [make_text_inputs()])
    relu = BertModel(tiny_bert_config(hidden_act="relu"))
    with pytest.raises(ValueError, match="no nn.ReLU module accepted by filter_fn"):
        measure_sparsity(relu, [make_text_inputs()], filter_fn=lambda module, name: False)
    with pytest.raises(ValueError, match="got no batch"):
        measure_sparsity(relu, [])
    report = measure_sparsity(relu, [make_text_inputs()])
    path = save_sparsity_plot(report, tmp_path / "plot" / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sparsity_cli_on_a_checkpoint_with_json_and_plot(tmp_path, capsys):
    tokenizer = wordpiece_tokenizer("good bad movie great awful film".split())  # vocab=: 5.25 ignores vocab_file=
    torch.manual_seed(0)
    model = hf_lambda_gelu.convert_to_lambda_gelu(BertModel(tiny_bert_config(vocab_size=len(tokenizer))))
    hf_lambda_gelu.reluize(model, tolerance=None)  # λ = 1: a naive swap is all the sparsity test needs
    model.save_pretrained(tmp_path / "relu")
    tokenizer.save_pretrained(tmp_path / "relu")
    (tmp_path / "data.csv").write_text("review,label\ngood movie,1\nawful awful film bad,0\ngreat,1\n")
    code = main(["sparsity", str(tmp_path / "relu"), "--data", str(tmp_path / "data.csv"), "--text-column", "review",
                 "--batch-size", "2", "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "encoder.layer.1.intermediate.intermediate_act_fn" in out
    report = json.loads((tmp_path / "s.json").read_text())
    assert report["batch_size"] == 2 and report["tokens"] == 4 + 6 + 3  # [CLS] ... [SEP] per text
    assert (tmp_path / "s.png").is_file() and not (tmp_path / "relu" / "activation_sparsity.json").exists()

    assert main(["sparsity", str(tmp_path / "relu"), "--data", str(tmp_path / "data.csv")]) == 1
    assert "has no 'text' column (columns: ['label', 'review'])" in capsys.readouterr().err

"""relufy: a ReLU twin of a trained GELU model by distillation, label-free, with its fidelity report."""

from __future__ import annotations

import json

import pytest
import torch
from fake_hub import TOKEN
from tiny_data import VOCAB, lm_dataset, text_dataset, tiny_bert, tiny_gpt2
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel, default_data_collator

from hf_lambda_gelu import (
    InvalidSettingError,
    NoGELUFoundError,
    NonFiniteLossError,
    RelufyArguments,
    RelufyTrainer,
    relufy,
    save_release,
)
from hf_lambda_gelu.fidelity import FidelityReport, Pooling, measure_fidelity, model_kind
from hf_lambda_gelu.relufy import _student


def _args(tmp_path, **overrides) -> RelufyArguments:
    defaults = dict(
        output_dir=str(tmp_path / "work"), road="swap", max_steps=6, per_device_train_batch_size=8,
        learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, data_seed=0,
    )  # fmt: skip
    return RelufyArguments(**{**defaults, **overrides})


def _tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB,
        initializer_range=0.2,
    )  # fmt: skip
    return BertModel(config)


@pytest.mark.parametrize("road", ["swap", "lambda"])
def test_classifier_twin_is_relu_closer_than_the_naive_swap_and_releases(tmp_path, road):
    model = tiny_bert(initializer_range=0.2).eval()  # large pre-activations: the naive swap hurts
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data, held_out = text_dataset(96, seed=0), text_dataset(48, seed=1)
    twin, report = relufy(model, data, _args(tmp_path, road=road, max_steps=30, learning_rate=3e-4), eval_dataset=held_out,
                          data_collator=default_data_collator)  # fmt: skip
    assert twin.config.hidden_act == "relu"
    assert not any("GELU" in type(m).__name__ for m in twin.modules())
    # the original is the teacher: untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    naive = _student(model, _args(tmp_path, road="swap"))
    naive_report = measure_fidelity(model, naive.eval(), [default_data_collator(list(held_out))])
    assert report.kind == "classifier" and report.examples == 48
    assert report.mean_kl < naive_report.mean_kl
    assert report.hidden_state_rel_error[-1] < naive_report.hidden_state_rel_error[-1]
    assert report.accuracy_original is not None and 0 <= report.accuracy_twin <= 1
    assert report.training["road"] == road and report.training["steps"] == 30
    release = save_release(twin, tmp_path / "release")
    reloaded = AutoModelForSequenceClassification.from_pretrained(release)  # stock transformers
    x = torch.randint(1, VOCAB, (2, 8))
    torch.testing.assert_close(reloaded(input_ids=x).logits, twin(input_ids=x).logits)


def test_label_free_training_never_reads_labels(tmp_path):
    """Garbage labels (out of range for the head: any read would fail) give the very same twin as no labels."""
    data = text_dataset(64)
    garbage = data.map(lambda _: {"labels": 999})
    no_labels = data.remove_columns("labels")
    twins = [
        relufy(tiny_bert().eval(), d, _args(tmp_path), data_collator=default_data_collator)[0]
        for d in (garbage, no_labels)
    ]
    for (name, a), b in zip(twins[0].state_dict().items(), twins[1].state_dict().values()):
        assert torch.equal(a, b), name
    # with a task loss the labels are read: the garbage ones fail
    with pytest.raises(IndexError):
        relufy(tiny_bert().eval(), garbage, _args(tmp_path, task_alpha=1.0), data_collator=default_data_collator)


def test_causal_lm_twin_reports_perplexity_and_next_token_agreement(tmp_path):
    model = tiny_gpt2().eval()
    twin, report = relufy(model, lm_dataset(48), _args(tmp_path, max_steps=20), eval_dataset=lm_dataset(24, seed=3),
                          data_collator=default_data_collator)  # fmt: skip
    assert twin.config.activation_function == "relu"
    assert report.kind == "causal_lm" and report.top1_agreement is None
    assert 0.5 < report.next_token_agreement <= 1.0
    assert report.perplexity_twin == pytest.approx(report.perplexity_original, rel=0.05)
    assert report.examples == 24 * 11  # next-token positions


def test_embedder_twin_reports_cosine_and_neighbours(tmp_path):
    model = _tiny_encoder().eval()
    data = text_dataset(64).remove_columns("labels")
    held_out = text_dataset(32, seed=5).remove_columns("labels")
    twin, report = relufy(model, data, _args(tmp_path, max_steps=20, learning_rate=3e-4), eval_dataset=held_out,
                          data_collator=default_data_collator, pooling=Pooling("mean"))  # fmt: skip
    naive = _student(model, _args(tmp_path)).eval()
    naive_report = measure_fidelity(model, naive, [default_data_collator(list(held_out))])
    assert report.kind == "embedder" and report.pooling == "mean"
    assert naive_report.mean_cosine < report.mean_cosine <= 1.0
    assert report.worst_cosine <= report.mean_cosine
    assert 0.0 <= report.neighbour_agreement <= 1.0


def test_identical_models_agree_perfectly_and_small_eval_sets_are_refused():
    model = _tiny_encoder().eval()
    batch = {"input_ids": torch.randint(1, VOCAB, (12, 6))}
    report = measure_fidelity(model, model, [batch])
    assert report.mean_cosine == pytest.approx(1.0) and report.neighbour_agreement == 1.0
    assert report.hidden_state_rel_error == [0.0, 0.0, 0.0]
    with pytest.raises(InvalidSettingError, match="more than 10"):
        measure_fidelity(model, model, [{"input_ids": batch["input_ids"][:10]}])


def test_pooling_modes():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert Pooling("mean")(hidden, mask).tolist() == [[2.0, 2.0]]
    assert Pooling("cls")(hidden, mask).tolist() == [[1.0, 0.0]]
    assert Pooling("max")(hidden, mask).tolist() == [[3.0, 4.0]]
    with pytest.raises(InvalidSettingError, match="lasttoken"):
        Pooling("lasttoken")


def test_model_kinds():
    assert model_kind(tiny_bert()) == "classifier"
    assert model_kind(tiny_gpt2()) == "causal_lm"
    assert model_kind(_tiny_encoder()) == "embedder"


@pytest.mark.parametrize(
    ("setting", "value", "match"),
    [("road", "slow", "road='slow'"), ("hardening_end", 0.0, "hardening_end=0.0"),
     ("hidden_alpha", float("nan"), "hidden_alpha=nan"), ("distill_temperature", 0.0, "distill_temperature")],
)  # fmt: skip
def test_bad_settings_name_the_setting(tmp_path, setting, value, match):
    with pytest.raises(InvalidSettingError, match=match):
        _args(tmp_path, **{setting: value})


def test_all_weights_zero_is_refused(tmp_path):
    with pytest.raises(InvalidSettingError, match="at least one"):
        _args(tmp_path, hidden_alpha=0.0, logits_alpha=0.0, embedding_alpha=0.0)


def test_model_without_gelu_is_refused_before_training(tmp_path):
    model = tiny_bert(hidden_act="relu")
    with pytest.raises(NoGELUFoundError):
        relufy(model, text_dataset(8), _args(tmp_path), data_collator=default_data_collator)
    assert not (tmp_path / "work").exists()


def test_report_json_round_trips(tmp_path):
    model = _tiny_encoder().eval()
    report = measure_fidelity(model, model, [{"input_ids": torch.randint(1, VOCAB, (12, 6))}])
    assert json.loads(json.dumps(report.to_dict()))["mean_cosine"] == pytest.approx(1.0)
    assert "neighbour agreement" in report.format_table() and "| mean cosine" in report.markdown()


def test_bf16_twin_releases_through_the_gate(tmp_path):
    model = tiny_bert(initializer_range=0.2).eval()
    twin, _ = relufy(model, text_dataset(32), _args(tmp_path, bf16=True), data_collator=default_data_collator)
    save_release(twin, tmp_path / "release")  # the gate compares the twin (no autocast wrapper left) with its reload


def test_a_nan_input_stops_relufy_at_its_step(tmp_path):
    from tiny_data import image_dataset, tiny_vit

    data = image_dataset(16)
    pixels = torch.tensor(data["pixel_values"])
    pixels[3, 0, 0, 0] = float("nan")
    data = data.remove_columns("pixel_values").add_column("pixel_values", pixels.tolist())
    with pytest.raises(NonFiniteLossError, match="pixel_values, rows"):
        relufy(tiny_vit().eval(), data, _args(tmp_path), data_collator=default_data_collator)


def test_dropout_is_off_in_the_student_but_kept_in_the_saved_config(tmp_path):
    model = tiny_bert(hidden_dropout_prob=0.3)
    student = _student(model, _args(tmp_path))
    assert all(m.p == 0.0 for m in student.modules() if isinstance(m, torch.nn.Dropout))
    assert student.config.hidden_dropout_prob == 0.3
    kept = _student(model, _args(tmp_path, student_dropout=True))
    assert any(m.p == 0.3 for m in kept.modules() if isinstance(m, torch.nn.Dropout))


def test_checkpoints_of_a_relufy_run_never_hold_the_hub_token(tmp_path):
    """Issue 25 item 3: RelufyTrainer shares LambdaGELUTrainer's guard (the token used to be pickled as is)."""
    args = _args(tmp_path, save_strategy="steps", save_steps=3, hub_token=TOKEN)
    relufy(tiny_bert().eval(), text_dataset(48), args, data_collator=default_data_collator)
    saved = sorted((tmp_path / "work").glob("checkpoint-*/training_args.bin"))
    assert len(saved) == 2
    for path in saved:
        assert TOKEN.encode() not in path.read_bytes(), path
        assert torch.load(path, weights_only=False).hub_token is None
    assert args.hub_token == TOKEN


def test_a_relufy_run_never_uploads_a_checkpoint_whatever_the_hub_strategy(tmp_path, monkeypatch):
    """Upstream's checkpoint push writes training_args.bin (token set) into output_dir and uploads it."""
    import transformers.trainer

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda *a, **k: pytest.fail("a checkpoint was uploaded"))
    args = _args(tmp_path, hub_token=TOKEN, hub_strategy="every_save", hub_model_id="me/twin")
    trainer = RelufyTrainer(tiny_bert(), args, teacher=tiny_bert().eval(), kind="classifier", pooling=Pooling())
    (tmp_path / "checkpoint-1").mkdir()
    trainer._push_from_checkpoint(str(tmp_path / "checkpoint-1"))
    assert not list((tmp_path / "work").glob("training_args.bin"))


@pytest.mark.parametrize("arguments", ["RelufyArguments", "LambdaGELUTrainingArguments"])
def test_repr_of_the_arguments_masks_the_hub_token_as_transformers_does(tmp_path, arguments):
    import hf_lambda_gelu

    args = getattr(hf_lambda_gelu, arguments)(output_dir=str(tmp_path), report_to="none", hub_token=TOKEN)
    for text in (repr(args), str(args), repr([args])):
        assert TOKEN not in text and "hub_token=<HUB_TOKEN>" in text
    assert args.hub_token == TOKEN


@pytest.mark.parametrize(
    ("model", "weights", "named"),
    [(tiny_bert, dict(hidden_alpha=0.0, logits_alpha=0.0, embedding_alpha=1.0), "hidden_alpha/logits_alpha/task_alpha"),
     (tiny_gpt2, dict(hidden_alpha=0.0, logits_alpha=0.0), "hidden_alpha/logits_alpha/task_alpha"),
     (_tiny_encoder, dict(hidden_alpha=0.0, embedding_alpha=0.0), "hidden_alpha/embedding_alpha/task_alpha")],
)  # fmt: skip
def test_a_loss_that_is_zero_for_the_model_kind_is_refused_before_training(tmp_path, model, weights, named):
    """Issue 25 item 17: a classifier with only embedding_alpha > 0 used to fail at the first step ("element 0 of
    tensors does not require grad")."""
    with pytest.raises(InvalidSettingError, match=f"^{named}=0.0 is invalid: no loss left") as err:
        relufy(model().eval(), text_dataset(16), _args(tmp_path, **weights), data_collator=default_data_collator)
    assert err.value.name == named
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [(dict(learning_rate=float("nan")), "learning_rate"), (dict(learning_rate=float("inf")), "learning_rate"),
     (dict(learning_rate=0.0), "learning_rate"), (dict(learning_rate=-1e-4), "learning_rate"),
     (dict(max_steps=-1, num_train_epochs=float("nan")), "num_train_epochs"),
     (dict(max_steps=-1, num_train_epochs=0.0), "num_train_epochs"),
     (dict(max_steps=0, num_train_epochs=0.0), "num_train_epochs"),
     (dict(max_steps=6, num_train_epochs=float("nan")), "num_train_epochs"),
     (dict(max_steps=-1, num_train_epochs=-1.0), "num_train_epochs")],
)  # fmt: skip
def test_a_run_that_cannot_train_is_refused(tmp_path, overrides, named):
    with pytest.raises(InvalidSettingError, match=f"^{named}=") as err:
        _args(tmp_path, **overrides)
    assert err.value.name == named


def test_only_the_training_free_refit_road_may_take_no_step(tmp_path):
    """num_train_epochs=0 / max_steps=0 / learning_rate=0 stay allowed for road "refit" (training-free)."""
    args = _args(tmp_path, road="refit", max_steps=0, num_train_epochs=0.0, learning_rate=0.0)
    assert args.num_train_epochs == 0 and args.max_steps == 0
    with pytest.raises(InvalidSettingError, match="^learning_rate=nan"):
        _args(tmp_path, road="refit", max_steps=0, num_train_epochs=0.0, learning_rate=float("nan"))
    # max_steps > 0 decides the length: num_train_epochs=0 is then harmless
    assert _args(tmp_path, max_steps=6, num_train_epochs=0.0).max_steps == 6


def test_causal_lm_card_names_the_held_out_texts_and_the_next_token_predictions():
    """Issue 25 item 6: 20 texts held out gave "Measured on 100 held-out inputs" (100 = next-token predictions)."""
    model = tiny_gpt2().eval()
    batch = {"input_ids": torch.randint(1, VOCAB, (20, 6))}
    report = measure_fidelity(model, model, [batch])
    assert (report.inputs, report.examples) == (20, 100)
    assert "Measured on 20 held-out texts (100 next-token predictions) that" in report.markdown()
    classifier = measure_fidelity(tiny_bert().eval(), tiny_bert().eval(), [batch])
    assert "Measured on 20 held-out inputs that" in classifier.markdown()


@pytest.mark.parametrize("road", ["swap", "lambda"])
def test_the_card_says_how_the_twin_was_distilled_once(road):
    """Issue 25 item 7: "then distilled and distilled" (swap) and "while it distilled and distilled" (lambda)."""
    from hf_lambda_gelu.release.twin import build_relufy_card

    training = {"road": road, "steps": 5, "train_examples": 40, "learning_rate": 1e-4, "hidden_alpha": 1.0,
                "hardening_end": 0.3 if road == "lambda" else None}  # fmt: skip
    report = FidelityReport("classifier", 10, [0.0], top1_agreement=1.0, mean_kl=0.0, training=training)
    text = build_relufy_card(tiny_bert(hidden_act="relu").config, report, base_model="me/bert-gelu").text
    assert "distilled and distilled" not in text and "while it distilled" not in text
    assert text.count("distilled to the frozen original") == 2  # the summary and "Road to ReLU"
    if road == "lambda":
        assert "while λ was hardened to λ* over the first 30 % of the steps" in text


@pytest.mark.parametrize(
    ("recorded", "title", "base_model"),
    [("google-bert/bert-base-uncased", "bert-base-uncased-relu", "google-bert/bert-base-uncased"),
     (None, "model-relu", None), ("/home/me/runs/checkpoint-500", "model-relu", None), ("", "model-relu", None)],
)  # fmt: skip
def test_the_card_names_the_original_by_its_recorded_hub_id_before_its_folder(tmp_path, recorded, title, base_model):
    """Issue 25 item 7: a model in .../model was released as "# model-relu" although its config names its Hub id."""
    from hf_lambda_gelu.release.twin import build_relufy_card

    folder = tmp_path / "model"
    tiny_bert().save_pretrained(folder)
    if recorded is not None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": recorded}))
    report = FidelityReport("classifier", 10, [0.0], top1_agreement=1.0, mean_kl=0.0, training={"road": "swap"})
    card = build_relufy_card(tiny_bert(hidden_act="relu").config, report, base_model=str(folder))
    assert f"\n# {title}\n" in card.text and card.data.base_model == base_model
    assert str(tmp_path) not in card.text
    if base_model:
        assert (
            f"**Original model:** [{base_model}](https://huggingface.co/{base_model}) (the `_name_or_path`" in card.text
        )


def test_an_embedders_table_has_no_blank_original_column_and_says_why():
    """Issue 25 item 7: the "original" column was blank on every row of an embedder's table and card."""
    from hf_lambda_gelu.fidelity import NO_ORIGINAL_COLUMN

    model = _tiny_encoder().eval()
    report = measure_fidelity(model, model, [{"input_ids": torch.randint(1, VOCAB, (12, 6))}])
    table, card = report.format_table(), report.markdown()
    assert "original" not in table.splitlines()[0] and table.endswith(NO_ORIGINAL_COLUMN)
    assert "| | ReLU twin |" in card and "original (GELU)" not in card and NO_ORIGINAL_COLUMN in card
    labelled = FidelityReport("classifier", 12, [0.0], top1_agreement=1.0, mean_kl=0.0, accuracy_original=0.5,
                              accuracy_twin=0.5)  # fmt: skip
    assert "original" in labelled.format_table().splitlines()[0] and "| original (GELU) |" in labelled.markdown()

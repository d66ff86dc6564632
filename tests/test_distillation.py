"""Distillation terms (hidden-state MSE, logit KL, self-distillation) and their use in LambdaGELUTrainer."""

import copy

import pytest
import torch
from tiny_data import text_dataset, tiny_bert, training_args

from hf_lambda_gelu import LambdaGELUTrainer, convert_to_lambda_gelu, hardness_profile
from hf_lambda_gelu.distillation import Distiller, frozen_copy, logits_kl, masked_hidden_mse


def test_masked_mse_ignores_padding_and_carries_gradient():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 8) for _ in range(3)]
    student = [t.clone().requires_grad_(True) for t in teacher]
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert masked_hidden_mse(student, teacher, mask).item() == 0.0
    with torch.no_grad():
        student[1][1, 3:] += 100.0  # masked positions: no effect
    assert masked_hidden_mse(student, teacher, mask).item() == 0.0
    assert masked_hidden_mse(student, teacher, None).item() > 0  # without a mask they count
    with torch.no_grad():
        student[1][0, 0] += 1.0  # one real position of one layer: 1/(3 layers · 8 real positions)
    loss = masked_hidden_mse(student, teacher, mask)
    assert loss.item() == pytest.approx(1.0 / (3 * 8))
    loss.backward()
    assert student[1].grad[0, 0].abs().sum() > 0 and student[1].grad[1, 3:].abs().sum() == 0
    with pytest.raises(ValueError, match="same non-zero number"):
        masked_hidden_mse(student[:2], teacher)


def test_logits_kl_is_zero_for_equal_logits_and_masks_positions():
    z = torch.randn(2, 4, 11)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert logits_kl(z, z, 2.0, mask).item() == pytest.approx(0.0, abs=1e-7)
    other = z.clone()
    other[1, 2:] = torch.randn(2, 11)
    assert logits_kl(other, z, 2.0, mask).item() == pytest.approx(0.0, abs=1e-7)
    s = z.clone().requires_grad_(True)
    t = z + torch.randn_like(z)
    kl = logits_kl(s, t, 2.0, mask)
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(z / 2, -1), torch.log_softmax(t / 2, -1), log_target=True, reduction="none"
    ).sum(-1)
    assert kl.item() == pytest.approx(4.0 * expected[mask.bool()].mean().item(), rel=1e-5)
    kl.backward()
    assert s.grad.abs().sum() > 0


def _distill_check(student, batch, **kwargs):
    """Loss is 0 for student == teacher, then positive with student-only gradients after a weight change."""
    teacher = frozen_copy(student)
    distiller = Distiller(teacher, **kwargs)
    student.eval()
    out = student(**batch, output_hidden_states=distiller.needs_hidden_states)
    assert distiller.loss(out, batch).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = student(**batch, output_hidden_states=distiller.needs_hidden_states)
    loss = distiller.loss(out, batch)
    assert loss.item() > 1e-4
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training


def test_feature_and_logit_distillation_on_encoder_vit_and_causal_lm(tiny_bert_mlm, tiny_vit, tiny_gpt2):
    ids = torch.randint(0, 99, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    _distill_check(tiny_bert_mlm, {"input_ids": ids, "attention_mask": mask, "labels": ids}, distill_alpha=1.0)
    _distill_check(tiny_vit, {"pixel_values": torch.randn(2, 3, 16, 16)}, distill_alpha=1.0)
    _distill_check(tiny_gpt2, {"input_ids": ids, "attention_mask": mask}, distill_alpha=1.0, distill_logits_alpha=1.0)


def test_distiller_without_teacher_rejects_teacher_terms():
    with pytest.raises(ValueError, match="distill_alpha=1.0"):
        Distiller(None, distill_alpha=1.0)


def _first_losses(tmp_path, **overrides):
    args = training_args(tmp_path, max_steps=4, logging_steps=1, reluize_at_end=False, **overrides)
    trainer = LambdaGELUTrainer(model=tiny_bert(), args=args, train_dataset=text_dataset())
    trainer.train()
    return trainer, [h["loss"] for h in trainer.state.log_history if "loss" in h]


@pytest.mark.slow
def test_trainer_adds_feature_distillation_to_the_original_model(tmp_path):
    plain_trainer, plain = _first_losses(tmp_path / "plain", distill_alpha=0.0)
    trainer, distilled = _first_losses(tmp_path / "distill", distill_alpha=5.0)
    teacher = trainer.distiller.teacher
    # the teacher is the GELU original, frozen, in eval mode, untouched by training and off the optimizer
    assert not hardness_profile(teacher) and not teacher.training
    original = tiny_bert()
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), original.state_dict().values()))
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not optimized & {id(p) for p in teacher.parameters()}
    # step 1: same model, batch and dropout; the distilled loss adds α·MSE (> 0: dropout in the student only)
    assert distilled[0] > plain[0] + 1e-6
    logged = [h["distill_loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 4 and all(v > 0 for v in logged)
    assert distilled[0] == pytest.approx(plain[0] + logged[0], rel=1e-5)
    # evaluation reports the task loss only: same weights, same eval loss as the plain trainer's
    plain_trainer.model.load_state_dict(trainer.model.state_dict())
    data = text_dataset()
    assert trainer.evaluate(data)["eval_loss"] == pytest.approx(plain_trainer.evaluate(data)["eval_loss"], rel=1e-6)


@pytest.mark.slow
def test_self_distillation_snapshot_is_the_model_at_hardening_start(tmp_path):
    trainer, _ = _first_losses(tmp_path, self_distill_alpha=1.0, hardening_start=0.5)
    snapshot = trainer.distiller.snapshot
    assert snapshot is not None and not snapshot.training
    learned = trainer.learned_profile()
    assert hardness_profile(snapshot) == pytest.approx(learned, rel=1e-6)
    assert all(v < 2.0 for v in learned.values())  # not the hardened λ
    assert all(not p.requires_grad for p in snapshot.parameters())


@pytest.mark.slow
def test_teacher_is_taken_before_conversion_and_a_converted_model_works_too(tmp_path):
    model = convert_to_lambda_gelu(tiny_bert())
    args = training_args(tmp_path, max_steps=2, reluize_at_end=False, distill_alpha=1.0)
    trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=text_dataset())
    before = copy.deepcopy(trainer.distiller.teacher.state_dict())
    trainer.train()
    assert all(torch.equal(before[k], v) for k, v in trainer.distiller.teacher.state_dict().items())


def test_distillation_trainer_runs_the_relu_first_peer_road(tmp_path):
    from transformers import TrainingArguments

    from hf_lambda_gelu import reluize
    from hf_lambda_gelu.distillation import DistillationTrainer

    model = tiny_bert()
    teacher = frozen_copy(model)  # the GELU original
    reluize(convert_to_lambda_gelu(model), tolerance=None)  # the peer road swaps GELU → ReLU naively, on purpose
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
        per_device_train_batch_size=16, learning_rate=1e-3,
    )  # fmt: skip
    trainer = DistillationTrainer(
        model=model, args=args, train_dataset=text_dataset(), distiller=Distiller(teacher, distill_alpha=1.0)
    )
    trainer.train()
    assert model.config.hidden_act == "relu" and teacher.config.hidden_act == "gelu"
    logged = [h["distill_loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(v > 0 for v in logged)  # ReLU vs GELU features differ


@pytest.mark.slow
def test_distillation_term_follows_gradient_accumulation(tmp_path):
    # GPT-2's loss is normalized over the accumulated batch (num_items_in_batch): the distillation term,
    # a per-micro-batch mean, is divided by the accumulation steps, so 1×16 and 2×8 log the same loss.
    from tiny_data import lm_dataset, tiny_gpt2

    losses = []
    for accumulation, batch in ((1, 16), (2, 8)):
        model = tiny_gpt2()
        model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = 0.0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        args = training_args(
            tmp_path / str(accumulation), max_steps=1, logging_steps=1, reluize_at_end=False, distill_alpha=10.0,
            per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        )  # fmt: skip
        trainer = LambdaGELUTrainer(model=model, args=args, train_dataset=lm_dataset(n=16))
        trainer.train()
        assert trainer.model_accepts_loss_kwargs
        losses.append(next(h for h in trainer.state.log_history if "loss" in h))
    assert losses[0]["distill_loss"] > 0.01  # the term is not negligible next to the task loss
    assert losses[1]["loss"] == pytest.approx(losses[0]["loss"], rel=1e-4)

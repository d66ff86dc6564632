"""create_lambda_gelu_optimizer: the method with any Trainer (stock Trainer, TRL's SFTTrainer) on a tiny GPT-2."""

from __future__ import annotations

import pytest
import torch
from tiny_data import lm_dataset, tiny_gpt2, training_args
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_lambda_gelu import (
    HardeningCallback,
    LambdaGELUTrainer,
    LambdaOptimizerError,
    NotLambdaGELUModelError,
    convert_to_lambda_gelu,
    create_lambda_gelu_optimizer,
    hardness_profile,
    install_lambda_update,
    reluize,
)
from hf_lambda_gelu.activation import lambda_modules
from hf_lambda_gelu.hardening import target_lambda_for_tolerance

LAMBDA_LR = 0.05
RUN = dict(max_steps=8, per_device_train_batch_size=16, learning_rate=1e-3, seed=0, data_seed=0)
QUIET = dict(report_to="none", use_cpu=True, disable_tqdm=True, save_strategy="no", logging_steps=4)


def _lambda_gpt2(lam: float = 1.0):
    model = convert_to_lambda_gelu(tiny_gpt2())
    for _, module in lambda_modules(model):
        module.set_lambda(lam)
    return model


def _first_step_lambda_change(model, optimizer) -> list[float]:
    """|Δλ| per layer after one optimizer step on a real LM loss."""
    before = [m.lambda_.item() for _, m in lambda_modules(model)]
    ids = torch.tensor(lm_dataset(n=8)["input_ids"])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return [abs(m.lambda_.item() - b) for (_, m), b in zip(lambda_modules(model), before)]


class _LambdaRecorder(TrainerCallback):
    """hardness_profile after every optimizer step (what the Trainer's optimizer did to λ)."""

    def __init__(self):
        self.profiles: dict[int, dict[str, float]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.profiles[state.global_step] = hardness_profile(model)


def test_optimizer_has_the_lambda_group_and_steps_lambda_by_its_learning_rate():
    model = _lambda_gpt2(2.0)
    optimizer = create_lambda_gelu_optimizer(
        model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR, weight_decay=0.1, betas=(0.8, 0.99)
    )
    groups = optimizer.param_groups
    assert [(g["lr"], g["weight_decay"], bool(g.get("lambda_group"))) for g in groups] == [
        (1e-3, 0.1, False),
        (1e-3, 0.0, False),
        (LAMBDA_LR, 0.0, True),
    ]
    assert {id(p) for p in groups[2]["params"]} == {id(m.lambda_raw) for _, m in lambda_modules(model)}
    assert all(g["betas"] == (0.8, 0.99) for g in groups)  # optimizer_kwargs reach the optimizer
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # installing again (what LambdaGELUTrainer does with a passed optimizer) keeps one update
    assert install_lambda_update(optimizer, model) is install_lambda_update(optimizer, model)
    # Adam's first step is ±lr in λ-space with the update; on the raw parameter it would be ≈ 6.3·lr at λ = 2
    changes = _first_step_lambda_change(model, optimizer)
    assert all(c == pytest.approx(LAMBDA_LR, rel=1e-3) for c in changes), changes


def test_sgd_family_is_detected_and_bad_input_raises():
    model = _lambda_gpt2(2.0)
    optimizer = create_lambda_gelu_optimizer(model, torch.optim.SGD, lr=1e-3, lambda_learning_rate=LAMBDA_LR)
    assert install_lambda_update(optimizer, model).family == "sgd"
    changes = _first_step_lambda_change(model, optimizer)  # RMS-normalized: the first step is lr exactly
    assert all(c == pytest.approx(LAMBDA_LR, rel=1e-3) for c in changes), changes
    with pytest.raises(LambdaOptimizerError, match="already steps λ as 'sgd'"):
        install_lambda_update(optimizer, model, lambda_optimizer_family="adaptive")
    with pytest.raises(NotLambdaGELUModelError, match="GPT2LMHeadModel"):
        create_lambda_gelu_optimizer(tiny_gpt2(), torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR)
    with pytest.raises(LambdaOptimizerError, match="lambda_learning_rate=-0.1"):
        create_lambda_gelu_optimizer(model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=-0.1)
    with pytest.raises(LambdaOptimizerError, match="lambda_optimizer_family='adam'"):
        create_lambda_gelu_optimizer(
            model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR, lambda_optimizer_family="adam"
        )


def test_stock_trainer_with_the_optimizer_and_callback_is_the_lambda_gelu_trainer(tmp_path):
    """Stock Trainer + create_lambda_gelu_optimizer + HardeningCallback + reluize = LambdaGELUTrainer."""
    data = lm_dataset()
    model = _lambda_gpt2(2.0)
    optimizer = create_lambda_gelu_optimizer(model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR)
    hardening, recorder = HardeningCallback(hardening_start=0.5, hardening_end=1.0), _LambdaRecorder()
    args = TrainingArguments(output_dir=str(tmp_path / "stock"), **RUN, **QUIET)
    trainer = Trainer(
        model=model, args=args, train_dataset=data, optimizers=(optimizer, None), callbacks=[hardening, recorder]
    )
    trainer.train()
    assert hardening.start_step == 4
    learned = {name: lam[0] for name, lam in hardening.start_lambdas.items()}
    assert learned == recorder.profiles[4]  # λ learned for 4 steps, by about the λ learning rate per step
    assert all(abs(lam - 2.0) == pytest.approx(LAMBDA_LR, rel=1e-3) for lam in recorder.profiles[1].values())
    target = target_lambda_for_tolerance(1e-3)
    assert all(lam == pytest.approx(target, rel=1e-5) for lam in hardness_profile(model).values())
    report = reluize(model)
    assert report.unhardened is False and report.max_error_bound == pytest.approx(1e-3, rel=1e-4)
    assert model.config.activation_function == "relu" and not lambda_modules(model)
    assert all(type(block.mlp.act) is torch.nn.ReLU for block in model.transformer.h)

    # The same run through LambdaGELUTrainer: same pieces, same trajectory and weights.
    ours = LambdaGELUTrainer(
        model=_lambda_gpt2(2.0),
        args=training_args(
            tmp_path / "ours",
            lambda_learning_rate=LAMBDA_LR,
            hardening_start=0.5,
            hardening_end=1.0,
            distill_alpha=0.0,
            reluize_at_end=False,
            **RUN,
        ),
        train_dataset=data,
    )
    ours.train()
    assert ours.hardening.start_step == 4 and ours.hardening.start_lambdas.keys() == learned.keys()
    assert all(ours.hardening.start_lambdas[k] == pytest.approx([lam], abs=1e-6) for k, lam in learned.items())
    reluize(ours.model)
    for (name, a), b in zip(model.state_dict().items(), ours.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def _word_tokenizer(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def test_trl_sft_trainer_runs_the_method_to_a_relu_model(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    words = [f"w{i}" for i in range(40)]
    gen = torch.Generator().manual_seed(0)
    texts = [" ".join(words[j] for j in torch.randint(0, 40, (9,), generator=gen)) for _ in range(64)]
    model = _lambda_gpt2(2.0)
    optimizer = create_lambda_gelu_optimizer(model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR)
    hardening, recorder = HardeningCallback(hardening_start=0.5), _LambdaRecorder()
    args = SFTConfig(output_dir=str(tmp_path), max_length=12, lr_scheduler_type="constant", **RUN, **QUIET)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts}),
        processing_class=_word_tokenizer(words),
        optimizers=(optimizer, None),
        callbacks=[hardening, recorder],
    )
    trainer.train()
    # the λ-space update ran inside SFTTrainer's (accelerate-wrapped) optimizer: Adam's first step is ±η in λ
    assert all(abs(lam - 2.0) == pytest.approx(LAMBDA_LR, rel=1e-3) for lam in recorder.profiles[1].values())
    assert hardening.start_step == 4
    target = target_lambda_for_tolerance(1e-3)
    assert all(lam == pytest.approx(target, rel=1e-5) for lam in hardness_profile(model).values())
    report = reluize(model)
    assert report.unhardened is False and model.config.activation_function == "relu"
    ids = torch.tensor([[3, 4, 5, 6]])
    assert model(input_ids=ids).logits.isfinite().all()


def test_stock_trainer_resumes_mid_hardening_on_the_same_trajectory(tmp_path):
    """HardeningCallback restores its schedule itself, whatever restore_callback_states_from_checkpoint says."""
    data = lm_dataset()

    def run(out, hardening, recorder, resume=None, **extra):
        model = _lambda_gpt2(2.0)
        optimizer = create_lambda_gelu_optimizer(model, torch.optim.AdamW, lr=1e-3, lambda_learning_rate=LAMBDA_LR)
        args = TrainingArguments(output_dir=str(tmp_path / out), **RUN, **{**QUIET, "save_strategy": "steps"}, **extra)
        trainer = Trainer(
            model=model, args=args, train_dataset=data, optimizers=(optimizer, None), callbacks=[hardening, recorder]
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = _LambdaRecorder()
    run("full", HardeningCallback(hardening_start=0.25), full, save_steps=6)
    checkpoint = str(tmp_path / "full" / "checkpoint-6")  # hardening started at step 2
    for restore in (False, True):
        resumed = _LambdaRecorder()
        trainer = run(f"resumed_{restore}", HardeningCallback(hardening_start=0.25), resumed, checkpoint, save_steps=100,
                      restore_callback_states_from_checkpoint=restore)  # fmt: skip
        assert sorted(resumed.profiles) == [7, 8]
        assert all(resumed.profiles[s] == pytest.approx(full.profiles[s], rel=1e-6) for s in (7, 8)), restore
        (hardening,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, HardeningCallback)]
        assert hardening.start_step == 2

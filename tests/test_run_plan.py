"""Say what runs before it runs: the plan line and the time estimate of relufy and LambdaGELUTrainer runs."""

from __future__ import annotations

import re

import pytest
from tiny_data import text_dataset, tiny_bert
from transformers import TrainerControl, TrainerState, TrainingArguments, default_data_collator

from hf_lambda_gelu import LambdaGELUTrainer, LambdaGELUTrainingArguments, RelufyArguments, relufy
from hf_lambda_gelu.run_plan import RunPlanCallback, format_duration

COMMON = dict(per_device_train_batch_size=8, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)


def _lines(out: str, job: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"{job}: ")]


def test_relufy_prints_its_plan_before_the_first_step_then_an_estimate(tmp_path, capsys):
    args = RelufyArguments(output_dir=str(tmp_path), road="swap", max_steps=8, **COMMON)
    relufy(tiny_bert().eval(), text_dataset(40), args, eval_dataset=text_dataset(12, seed=1),
           data_collator=default_data_collator)  # fmt: skip
    plan, estimate = _lines(capsys.readouterr().out, "relufy")
    assert plan == "relufy: road swap · 40 inputs · 12 held out · 8 steps · batch 8 · device cpu"
    # timed over steps 2-6 (the first step's warm-up is left out), extrapolated to the 8 steps
    assert re.fullmatch(r"relufy: \d+\.\d\d s a step over 5 steps: about \d+ s for 8 steps \(\d+ s left\)", estimate)


def test_lambda_gelu_trainer_prints_its_road_and_held_out_set(tmp_path, capsys):
    args = LambdaGELUTrainingArguments(output_dir=str(tmp_path), max_steps=3, distill_alpha=0.0, **COMMON)
    trainer = LambdaGELUTrainer(
        model=tiny_bert(), args=args, train_dataset=text_dataset(24), eval_dataset=text_dataset(6)
    )
    trainer.train()
    (plan,) = _lines(capsys.readouterr().out, "LambdaGELUTrainer")  # 3 steps: too few for an estimate
    assert plan == (
        "LambdaGELUTrainer: road λ-GELU → ReLU (λ* ≈ 170 over 0-10 % of the steps) · 24 inputs · 6 held out · 3 steps"
        " · batch 8 · device cpu"
    )


@pytest.mark.parametrize(
    ("world_process_zero", "accumulation", "expected"),
    [(True, 4, "batch 8 × 4 accumulated"), (False, 1, None)],
)
def test_plan_names_accumulation_and_prints_on_the_main_process_only(
    tmp_path, world_process_zero, accumulation, expected
):
    lines: list[str] = []
    plan = RunPlanCallback("job", "swap", lambda: (None, None), write=lines.append)
    args = TrainingArguments(str(tmp_path), gradient_accumulation_steps=accumulation, **COMMON)
    state = TrainerState(max_steps=2, is_world_process_zero=world_process_zero)
    plan.on_train_begin(args, state, TrainerControl())
    if expected is None:
        assert lines == []
    else:
        assert lines == [f"job: road swap · no training set · no held-out set · 2 steps · {expected} · device cpu"]


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 59.6, 60, 61, 3599, 3600, 3661)] == [
        "0 s", "1 min", "1 min", "1 min 01 s", "59 min 59 s", "1 h 00 min", "1 h 01 min",
    ]  # fmt: skip

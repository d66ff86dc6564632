"""Resuming a recipe run killed mid-hardening (SIGKILL) ends exactly where the uninterrupted run ends.

Three real runs of recipes/text_classification.py on the tiny offline BERT case of test_recipes.py,
with a checkpoint every 2 steps and hardening from step 4 of 8: uninterrupted; killed (SIGKILL) when
step 7 begins, after ``checkpoint-6``; resumed from ``checkpoint-6`` with the same flags, which keeps
saving (``checkpoint-8``). Same λ profile, weights, metrics and naive-swap baseline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import test_recipes
import torch
from common import RESULTS_FILENAME
from helpers import offline_env
from safetensors.torch import load_file
from test_recipes import RECIPES, _recipe_args

from hf_lambda_gelu.hardening import PRE_HARDENING_WEIGHTS_NAME

bert_recipe_case = test_recipes.bert_case  # the tiny BERT checkpoint and csv data (a fixture)
KILLER = Path(__file__).resolve().parent / "kill_at_step.py"
SAVE_EVERY_2 = ["--save_strategy", "steps", "--save_steps", "2", "--max_steps", "8"]


def _run(args: list[str], tmp_path: Path, *prefix: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *prefix, str(RECIPES / "text_classification.py"), *args]
    env = offline_env(tmp_path, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)


def _flat(value, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}/").items()}


def _args(bert_case: dict, out: Path) -> list[str]:
    return [*_recipe_args("text_classification", {"text_classification": bert_case}, out), *SAVE_EVERY_2]


@pytest.mark.slow
def test_run_killed_mid_hardening_resumes_to_the_same_release(bert_recipe_case, tmp_path):
    bert_case = bert_recipe_case
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = _run(_args(bert_case, full), tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    proc = _run(_args(bert_case, killed), tmp_path, str(KILLER), "6")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-4000:]
    assert not (killed / RESULTS_FILENAME).exists() and not (killed / "checkpoint-8").exists()
    checkpoint = killed / "checkpoint-6"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["HardeningCallback"]["attributes"]["start_step"] == 4  # mid-hardening
    assert (checkpoint / PRE_HARDENING_WEIGHTS_NAME).is_file()

    proc = _run([*_args(bert_case, killed), "--resume_from_checkpoint", str(checkpoint)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # it kept saving: the checkpoint after the resume is complete (no KeyError at the first save)
    resumed_state = json.loads((killed / "checkpoint-8" / "trainer_state.json").read_text())
    assert resumed_state["stateful_callbacks"]["HardeningCallback"]["attributes"]["start_step"] == 4

    reports = [json.loads((d / "reluization_report.json").read_text()) for d in (full, killed)]
    assert reports[0]["lambdas"] == reports[1]["lambdas"]  # λ profile at the swap
    assert reports[0]["learned_lambdas"] == reports[1]["learned_lambdas"]  # learned before hardening
    for key in ("naive_swap", "before_swap", "after_swap", "max_abs_logit_diff", "prediction_agreement"):
        assert _flat(reports[1][key]) == pytest.approx(_flat(reports[0][key]), rel=1e-6, abs=1e-7), key
    assert "naive_swap_unavailable" not in reports[1]

    weights = [load_file(str(d / "model.safetensors")) for d in (full, killed)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=1e-6, msg=name)

    results = [json.loads((d / RESULTS_FILENAME).read_text()) for d in (full, killed)]
    for key, value in results[0].items():
        if key.startswith("eval_") or key.startswith("reluize_"):
            if key.endswith(("_runtime", "_per_second")):
                continue
            assert results[1][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key

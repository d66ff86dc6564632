"""benchmarks/gpu_check.py: its ``--tiny`` CPU run (one subprocess for the module) writes every section with sane
values, a failing section is recorded while the others run, and a run at real sizes needs CUDA."""

from __future__ import annotations

import json
import logging
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import offline_env

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"
TRAIN_SECTIONS = {"train_bert_base": "bert", "train_gpt2": "gpt2"}  # section → model_type
LAMBDA_STAR = 169.9712  # c / 1e-3: the default road's hardening target


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory) -> tuple[dict, str]:
    cwd = tmp_path_factory.mktemp("gpu_check")
    # no --out: --tiny writes a temporary file, never results/gpu/ (which holds GPU data only)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env=offline_env(cwd, OMP_NUM_THREADS="1"),
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = Path(proc.stdout.rsplit("wrote ", 1)[1].split()[0])
    assert out.name == "gpu_check.json" and BENCHMARKS not in out.parents
    return json.loads(out.read_text()), proc.stdout


def _finite_positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_tiny_run_records_every_section_and_its_machine(tiny_report):
    report, stdout = tiny_report
    assert set(report["sections"]) == {"op", *TRAIN_SECTIONS, "relufy", "fsdp2"} and report["failed_sections"] == []
    for name, section in report["sections"].items():
        assert "error" not in section and section["seconds"] > 0, name
        assert f"{name}: " in stdout  # its rows are in the printed table
    meta = report["meta"]
    assert meta["quick"] is True and meta["device"] == "cpu" and meta["device_name"].startswith("cpu")
    for key in ("torch", "transformers", "accelerate", "hf_lambda_gelu", "date", "command", "runtime_s"):
        assert meta[key], key
    assert report["targets"] == {
        "op_compiled_bf16_time_ratio_max": 1.10,
        "op_eager_bf16_time_ratio_max": 1.5,
        "train_step_time_ratio_max": 1.03,
        "train_peak_memory_ratio_max": 1.01,
    }


@pytest.mark.slow
def test_op_section_ratios_are_measured_side_by_side(tiny_report):
    op = tiny_report[0]["sections"]["op"]
    names = {f"{shape}_{dtype}" for shape in ("bert_base_mlp", "gpt2_medium_mlp") for dtype in ("bf16", "fp32")}
    assert set(op["cases"]) == names
    variants = {"relu", "gelu_eager", "gelu_compiled", "lambda_gelu_eager", "lambda_gelu_compiled"}
    for key, case in op["cases"].items():
        v = case["variants"]
        assert set(v) == variants, key
        assert all(len(r["times_ms"]) == op["settings"]["reps"] and r["peak_bytes"] > 0 for r in v.values()), key
        for mode in ("eager", "compiled"):
            ours, base = v[f"lambda_gelu_{mode}"]["times_ms"], v[f"gelu_{mode}"]["times_ms"]
            ratio = case[f"{mode}_time_ratio_to_gelu"]
            assert _finite_positive(ratio) and ratio == pytest.approx(
                statistics.median(o / b for o, b in zip(ours, base))
            )
            peak = v[f"lambda_gelu_{mode}"]["peak_bytes"] / v[f"gelu_{mode}"]["peak_bytes"]
            assert case[f"{mode}_peak_ratio_to_gelu"] == pytest.approx(peak)
        assert _finite_positive(case["eager_time_ratio_to_relu"])
        assert case["compiled_max_rel_diff_to_eager"] < 1e-2  # a fast wrong kernel would spoil the ratios
        # the targets apply to bf16; the checks say whether the ratios meet them
        if key.endswith("_bf16"):
            assert op["checks"][f"{key}_eager_time_ok"] is (case["eager_time_ratio_to_gelu"] <= 1.5)
            assert op["checks"][f"{key}_compiled_time_ok"] is (case["compiled_time_ratio_to_gelu"] <= 1.10)
    assert set(op["checks"]) == {
        f"{k}_{m}_time_ok" for k in names if k.endswith("_bf16") for m in ("eager", "compiled")
    }


@pytest.mark.slow
@pytest.mark.parametrize("section", sorted(TRAIN_SECTIONS))
def test_training_sections_time_every_arm_from_the_same_steps(tiny_report, section):
    m = tiny_report[0]["sections"][section]
    settings = m["settings"]
    assert settings["bf16"] is True and m["config"]["model_type"] == TRAIN_SECTIONS[section]
    arms = m["arms"]
    assert set(arms) == {"gelu", "lambda_gelu", "lambda_gelu_distill"}
    for arm, r in arms.items():
        assert len(r["times_ms"]) == settings["rounds"], arm
        assert all(len(run) == settings["steps"] for run in r["times_ms"]), arm
        medians = [statistics.median(run[settings["warmup_steps"] :]) for run in r["times_ms"]]
        assert r["step_ms_per_round"] == pytest.approx(medians), arm
        assert r["peak_bytes"] is None  # CPU: no max_memory_allocated
    for arm in ("lambda_gelu", "lambda_gelu_distill"):
        ratio = arms[arm]["step_time_ratio_to_gelu"]
        per_round = [o / b for o, b in zip(arms[arm]["step_ms_per_round"], arms["gelu"]["step_ms_per_round"])]
        assert _finite_positive(ratio) and ratio == pytest.approx(statistics.median(per_round)), arm
        assert arms[arm]["peak_ratio_to_gelu"] is None
    assert m["checks"]["step_time_ok"] is (arms["lambda_gelu"]["step_time_ratio_to_gelu"] <= 1.03)
    assert m["checks"]["peak_ok"] is None
    gate = m["release_gate"]
    assert isinstance(gate["passed"], bool) and (gate["error"] is None) is gate["passed"], gate
    assert m["checks"]["release_gate_passed"] is gate["passed"]


@pytest.mark.slow
def test_bf16_release_passes_the_gate(tiny_report):
    """The release of a bf16 Trainer run must reload as the model in memory (issue 20's target)."""
    for section in TRAIN_SECTIONS:
        gate = tiny_report[0]["sections"][section]["release_gate"]
        assert gate["passed"], (section, gate["error"])


@pytest.mark.slow
def test_fsdp2_section_runs_fully_shard_on_cpu_and_reloads_as_relu(tiny_report):
    fsdp = tiny_report[0]["sections"]["fsdp2"]
    assert fsdp["path"] == "torchrun_fully_shard_gloo" and "torch.distributed.run" in fsdp["command"]
    worker = fsdp["worker"]
    assert worker["path"] == "fully_shard" and worker["world_size"] == 1 and worker["backend"] == "gloo"
    assert worker["hidden_act"] == "relu"
    assert worker["final_profile"] and all(abs(v - LAMBDA_STAR) < 1e-3 for v in worker["final_profile"].values())
    assert fsdp["reloaded_hidden_act"] == "relu" and fsdp["reloaded_relu_modules"] == 2
    assert fsdp["reloaded_max_rel_logit_diff"] <= 1e-4
    assert fsdp["checks"] == {"fsdp_active": True, "reloads_as_relu": True}


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module; the logging settings its ``main`` changes are put back afterwards."""
    from transformers.utils import logging as hf_logging

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    package_logger = logging.getLogger("hf_lambda_gelu")
    verbosity, bars, level = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(), package_logger.level
    yield gpu_check
    hf_logging.set_verbosity(verbosity)
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()
    package_logger.setLevel(level)


def test_a_failing_section_is_recorded_and_the_others_still_run(gpu_check, monkeypatch, tmp_path, capsys):
    def broken(settings):
        raise RuntimeError("no kernel image for this device")

    def fine(settings):
        return {"value": 1.0, "device": str(settings.device)}

    sections = (
        gpu_check.Section("broken", broken, lambda r: []),
        gpu_check.Section("fine", fine, lambda r: [["value", str(r["value"]), "", ""]]),
    )
    monkeypatch.setattr(gpu_check, "SECTIONS", sections)
    out = tmp_path / "g.json"
    threads = str(torch.get_num_threads())  # keep this process's thread count
    assert gpu_check.main(["--tiny", "--out", str(out), "--threads", threads]) == 1
    report = json.loads(out.read_text())
    assert report["failed_sections"] == ["broken"]
    broken_result = report["sections"]["broken"]
    assert broken_result["error"] == "RuntimeError: no kernel image for this device"
    assert "raise RuntimeError" in broken_result["traceback"]
    assert report["sections"]["fine"]["value"] == 1.0 and report["sections"]["fine"]["device"] == "cpu"
    printed = capsys.readouterr().out
    assert "broken: error" in printed and "fine: value" in printed
    assert printed.rstrip().endswith("failed sections: broken")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the real-size run is refused only without CUDA")
def test_a_real_size_run_needs_cuda(gpu_check, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--out", "/nonexistent/g.json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--tiny" in err


@pytest.mark.slow
def test_relufy_section_times_the_refit_and_the_distillation_and_gates_every_bf16_twin(tiny_report):
    relufy = tiny_report[0]["sections"]["relufy"]
    assert relufy["bf16"] is True and set(relufy["models"]) == {"bert_base", "gpt2_medium"}
    for name, m in relufy["models"].items():
        assert m["parameters"] > 0 and len(m["batch"]) == 2, name
        refit = m["refit"]
        assert _finite_positive(refit["seconds"]) and refit["calibration_examples"] > 0, name
        assert refit["peak_bytes"] is None and refit["release_gate"] == {"passed": True, "error": None}, name
        assert set(m["roads"]) == {"swap", "lambda"}, name
        for road, r in m["roads"].items():
            assert r["steps"] == 4 and _finite_positive(r["steps_per_second"]), (name, road)
            assert r["steps_per_second"] == pytest.approx(1e3 / r["step_ms_median"])
            # the teacher's forward is a part of the step: its share is in (0, 1)
            assert 0 < r["teacher_share"] < 1 and r["teacher_share"] == pytest.approx(
                r["teacher_ms_median"] / r["step_ms_median"]
            ), (name, road)
            assert r["teacher_sharded"] is False and r["teacher_local_parameters"] == m["parameters"]
            assert r["peak_bytes"] is None and r["release_gate"] == {"passed": True, "error": None}, (name, road)
    assert relufy["distributed"] == {"skipped": "0 GPU(s): DDP/FSDP2 need at least 2"}
    assert relufy["checks"]["release_gate_passed"] is True

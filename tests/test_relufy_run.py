"""``relufy --output-dir WORK``: checkpoints kept, a killed run (SIGKILL) resumes to the uninterrupted run's twin."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env
from safetensors.torch import load_file
from test_relufy_cli import _classifier_dir, _csv, _texts

from hf_lambda_gelu.cli import main
from hf_lambda_gelu.errors import InvalidSettingError
from hf_lambda_gelu.release.twin import FIDELITY_FILENAME
from hf_lambda_gelu.relufy_run import COMMAND_FILENAME, work_folder

KILLER = Path(__file__).resolve().parent / "kill_at_step.py"


def test_a_work_folder_with_another_commands_checkpoints_is_refused(tmp_path):
    (tmp_path / "work" / "checkpoint-4").mkdir(parents=True)
    with work_folder(str(tmp_path / "work"), {"data": "a.txt", "seed": 1}, 2):
        pass
    assert json.loads((tmp_path / "work" / COMMAND_FILENAME).read_text()) == {"data": "a.txt", "seed": 1}
    with work_folder(str(tmp_path / "work"), {"data": "a.txt", "seed": 1}, 2) as work:  # the same command resumes
        assert work.resume_from == str(tmp_path / "work" / "checkpoint-4")
        assert work.save_settings == {"save_strategy": "steps", "save_steps": 2, "save_total_limit": 1}
    with pytest.raises(InvalidSettingError, match="seed: 1 then, 2 now"):
        with work_folder(str(tmp_path / "work"), {"data": "a.txt", "seed": 2}, 2):
            pass


def test_the_work_folder_cannot_be_the_release_folder(tmp_path, capsys):
    data = _texts(tmp_path / "t.txt", 30)
    out = tmp_path / "out"
    assert (
        main(["relufy", str(_classifier_dir(tmp_path)), str(out), "--data", str(data), "--output-dir", str(out)]) == 1
    )
    assert "the work folder cannot be OUT_DIR" in capsys.readouterr().err and not out.exists()


def _relufy(tmp_path: Path, out: Path, work: Path, *prefix: str) -> subprocess.CompletedProcess:
    args = ["relufy", str(tmp_path / "model"), str(out), "--data", str(tmp_path / "t.txt"), "--eval-data",
            str(tmp_path / "e.csv"), "--label-column", "label", "--max-steps", "6", "--batch-size", "4",
            "--learning-rate", "3e-4", "--output-dir", str(work), "--save-steps", "2"]  # fmt: skip
    cmd = [sys.executable, *(prefix or ["-m"]), "hf_lambda_gelu.cli", *args]
    return subprocess.run(cmd, env=offline_env(tmp_path, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)  # fmt: skip


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identically(tmp_path):
    _classifier_dir(tmp_path)
    _texts(tmp_path / "t.txt", 40)
    _csv(tmp_path / "e.csv", 12, seed=1)
    proc = _relufy(tmp_path, tmp_path / "full", tmp_path / "full_work")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [p.name for p in (tmp_path / "full_work").glob("checkpoint-*")] == ["checkpoint-6"]  # the last one kept

    killed, work = tmp_path / "killed", tmp_path / "work"
    proc = _relufy(tmp_path, killed, work, str(KILLER), "4", "-m")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-4000:]
    assert not killed.exists()  # the release is written only at the end
    assert [p.name for p in work.glob("checkpoint-*")] == ["checkpoint-4"]

    proc = _relufy(tmp_path, killed, work)  # the same command again: resumes from checkpoint-4
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Resuming the relufy run from {work / 'checkpoint-4'}." in proc.stderr, proc.stderr[-2000:]
    full, resumed = load_file(tmp_path / "full" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert full.keys() == resumed.keys()
    for name in full:
        assert full[name].equal(resumed[name]), name  # bit-identical on CPU
    a, b = (json.loads((d / FIDELITY_FILENAME).read_text()) for d in (tmp_path / "full", killed))
    assert a["training"]["steps"] == b["training"]["steps"] == 6
    assert a["top1_agreement"] == b["top1_agreement"] and a["accuracy_twin"] == b["accuracy_twin"]

"""hf_lambda_gelu.metrics: evaluate metric scripts shipped in the package, loadable offline.

- ``load_metric("accuracy")`` works in a fresh offline process with an empty HF_HOME, and computes
  what scikit-learn computes; an unknown name fails with the shipped list in the message.
- The wheel ships the script, and the installed copy is the one loaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from hf_lambda_gelu.metrics import SCRIPTS_DIR, load_metric, local_metric_path, shipped_metrics

REPO = Path(__file__).resolve().parent.parent

OFFLINE_CHECK = textwrap.dedent(
    """
    import json, sys
    import hf_lambda_gelu.metrics as m
    from hf_lambda_gelu.metrics import MetricNotFoundError, load_metric

    accuracy = load_metric("accuracy")
    result = {"scripts_dir": str(m.SCRIPTS_DIR), "accuracy": accuracy.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])}
    try:
        load_metric("f1")
    except MetricNotFoundError as err:
        result["error"] = str(err)
    print(json.dumps(result))
    """
)


def _offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty_hf_home"), **extra)
    env.pop("HF_MODULES_CACHE", None)
    env.pop("HF_EVALUATE_CACHE", None)
    return env


def _run_offline(tmp_path: Path, **extra: str) -> dict:
    import json

    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_CHECK], env=_offline_env(tmp_path, **extra), capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_accuracy_loads_offline_in_a_fresh_process(tmp_path):
    result = _run_offline(tmp_path)
    assert result["accuracy"] == {"accuracy": 0.75}
    # the package's own shipped script (the installed copy, or the checkout in an editable install)
    assert (Path(result["scripts_dir"]) / "accuracy.py").read_text() == (SCRIPTS_DIR / "accuracy.py").read_text()
    # not shipped: evaluate.load goes to the Hub, which is offline here; the message lists what ships
    assert "'f1' is not shipped" in result["error"] and "['accuracy']" in result["error"]


def test_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    metric = load_metric("accuracy", keep_in_memory=True)
    assert metric.compute(predictions=predictions, references=references)["accuracy"] == pytest.approx(
        accuracy_score(references, predictions)
    )
    count = metric.compute(predictions=predictions, references=references, normalize=False)["accuracy"]
    assert count == int((predictions == references).sum())


def test_local_lookup():
    assert "accuracy" in shipped_metrics()
    assert local_metric_path("accuracy") == SCRIPTS_DIR / "accuracy.py"
    assert local_metric_path("perplexity") is None  # the recipes compute it from eval_loss


@pytest.mark.slow
def test_wheel_ships_the_scripts_and_the_installed_copy_loads_offline(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "hf_lambda_gelu", project / "hf_lambda_gelu", ignore=ignore)
    if (REPO / "model_cards").is_dir():
        shutil.copytree(REPO / "model_cards", project / "model_cards", ignore=ignore)
    (project / "README.md").write_text("stub\n")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"]
    subprocess.run(build, cwd=project, check=True, capture_output=True, timeout=300)
    (wheel,) = (project / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for script in shipped_metrics():
        assert f"hf_lambda_gelu/metrics/scripts/{script}.py" in names

    result = _run_offline(tmp_path, PYTHONPATH=str(tmp_path / "site"))
    assert Path(result["scripts_dir"]) == tmp_path / "site" / "hf_lambda_gelu" / "metrics" / "scripts"
    assert result["accuracy"] == {"accuracy": 0.75}

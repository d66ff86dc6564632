"""The recipes' offline metric (recipes/metrics/accuracy.py through ``common.load_metric``), and the
installed package holding only what a user imports (no recipe plumbing, no scikit-learn import).

- ``load_metric("accuracy")`` works in a fresh offline process with an empty HF_HOME, and computes
  what scikit-learn computes; an unknown name fails with the local list in the message.
- The wheel ships the library only: no recipe helpers, no metric scripts; importing the installed
  package and its CLI does not import scikit-learn (the ``demo`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from common import METRICS_DIR, load_metric
from sklearn.metrics import accuracy_score

REPO = Path(__file__).resolve().parent.parent

OFFLINE_CHECK = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from common import MetricNotFoundError, load_metric

    result = {"accuracy": load_metric("accuracy").compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1])}
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


def _run(tmp_path: Path, code: str, *args: str, **extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=_offline_env(tmp_path, **extra), capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_accuracy_loads_offline_in_a_fresh_process(tmp_path):
    result = _run(tmp_path, OFFLINE_CHECK, str(REPO / "recipes"))
    assert result["accuracy"] == {"accuracy": 0.75}
    # not local: evaluate.load goes to the Hub, which is offline here; the message lists the local metrics
    assert "'f1' is not in recipes/metrics/" in result["error"] and "['accuracy']" in result["error"]


def test_accuracy_matches_scikit_learn():
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    weights = rng.random(200)
    metric = load_metric("accuracy", keep_in_memory=True)
    assert metric.compute(predictions=predictions, references=references)["accuracy"] == pytest.approx(
        accuracy_score(references, predictions)
    )
    weighted = metric.compute(predictions=predictions, references=references, sample_weight=weights)["accuracy"]
    assert weighted == pytest.approx(accuracy_score(references, predictions, sample_weight=weights))
    count = metric.compute(predictions=predictions, references=references, normalize=False)["accuracy"]
    assert count == int((predictions == references).sum())
    assert sorted(p.stem for p in METRICS_DIR.glob("*.py")) == ["accuracy"]


INSTALLED_CHECK = textwrap.dedent(
    """
    import json, sys
    import hf_lambda_gelu, hf_lambda_gelu.cli
    print(json.dumps({"file": hf_lambda_gelu.__file__, "sklearn": any(m.startswith("sklearn") for m in sys.modules)}))
    """
)


@pytest.mark.slow
def test_wheel_holds_the_library_only(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("hf_lambda_gelu", "model_cards", "recipes"):
        shutil.copytree(REPO / folder, project / folder, ignore=ignore)
    (project / "README.md").write_text("stub\n")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", "dist"]
    subprocess.run(build, cwd=project, check=True, capture_output=True, timeout=300)
    (wheel,) = (project / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = {n for n in zf.namelist() if not n.startswith("hf_lambda_gelu-")}  # not the .dist-info
        zf.extractall(tmp_path / "site")
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names} == {"hf_lambda_gelu"}
    assert "hf_lambda_gelu/demo.py" in names and "hf_lambda_gelu/cli.py" in names
    for plumbing in ("recipe_utils", "data_checks", "output_dirs", "common", "metrics/", "accuracy"):
        assert not any(plumbing in n for n in names), plumbing
    # scikit-learn is the demo extra's, not a requirement
    assert 'Requires-Dist: scikit-learn>=1.3; extra == "demo"' in metadata
    assert 'requires-dist: vadersentiment>=3.3; extra == "demo"' in metadata.lower()
    assert not any(
        line.startswith("Requires-Dist: scikit-learn") and "extra" not in line for line in metadata.splitlines()
    )

    result = _run(tmp_path, INSTALLED_CHECK, PYTHONPATH=str(tmp_path / "site"))
    assert Path(result["file"]).parent == tmp_path / "site" / "hf_lambda_gelu" and result["sklearn"] is False


def test_compute_accuracy_is_what_scikit_learn_computes_on_logits():
    from transformers import EvalPrediction

    from hf_lambda_gelu.metrics import compute_accuracy

    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(300, 7)), rng.integers(0, 7, 300)
    expected = accuracy_score(labels, logits.argmax(-1))
    assert 0.05 < expected < 0.5  # random logits: neither all right nor all wrong
    assert compute_accuracy(EvalPrediction(logits, labels)) == {"accuracy": pytest.approx(expected)}

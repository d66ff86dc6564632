"""benchmarks/release_gate.py --quick: every row, in-process (the reload worker is shared with other tests)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "release_gate.py"


@pytest.mark.slow
def test_quick_writes_every_row(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_release_gate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path / "gate.json")]) == 0
    report = json.loads((tmp_path / "gate.json").read_text())
    whats = [row["what"] for row in report["rows"]]
    assert whats == ["save_release, first call", "save_release, warm", "check_reload, warm", "save_pretrained"]
    assert all(row["model"] == "tiny-bert" for row in report["rows"])
    # the first call is timed once, the warm calls as medians of the same number of repetitions
    assert [row["reps"] for row in report["rows"]] == [1] + [report["rows"][1]["reps"]] * 3
    assert report["meta"]["quick"] is True and "save_release, warm" in capsys.readouterr().out

"""``benchmarks/relu_payoff.py --quick``: the GPT-2 decoding part end to end, in a fresh interpreter.

The sparse MLP path must reproduce dense ReLU decoding (same greedy tokens, logits within 1e-5);
the speed figures are not asserted (numbers come from the full run, see benchmarks/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "relu_payoff.py"


@pytest.mark.slow
def test_quick_decoding_run_writes_every_field_and_the_sparse_path_is_exact(tmp_path):
    out = tmp_path / "payoff.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--tasks", "docstrings_gpt2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=offline_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "batch-1 greedy decoding" in proc.stdout
    result = json.loads(out.read_text())["docstrings_gpt2"]
    speed = result["speed"]
    assert set(speed["ms_per_token"]) == {"gelu", "relu_dense", "relu_sparse", "relu_no_down_projection"}
    assert speed["identical_greedy_tokens"] is True
    assert speed["max_abs_logit_diff_sparse_vs_dense"] <= 1e-5
    assert {"down_projection_share", "bound_speedup", "sparse_vs_dense_speedup", "ship_sparse_path"} <= set(speed)
    sparsity = result["sparsity"]
    assert len(sparsity["layers"]) == 4 and 0.0 < sparsity["mean_token_sparsity"] < 1.0
    assert speed["zeros_per_token"] == sparsity["mean_token_sparsity"]

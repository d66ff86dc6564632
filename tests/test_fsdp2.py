"""FSDP2 (``fully_shard``) on CPU: 2 gloo ranks under torchrun, without the Trainer (tests/fsdp2_script.py).

Through ``Trainer(fsdp=...)`` on CPU accelerate silently runs DDP (PLATFORM.md), so FSDP2 is checked
directly: the λ-space update and the hardening schedule on DTensor-sharded λ, the ReLU swap, the
full state dict gathered on rank 0 and a release that stock transformers loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import offline_env

SCRIPT = os.path.join(os.path.dirname(__file__), "fsdp2_script.py")


@pytest.mark.slow
def test_fully_sharded_training_hardens_and_saves_a_stock_relu_release(tmp_path, run_python):
    env = offline_env(tmp_path, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        SCRIPT,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    # no warning from the package, no implicit replicated-DTensor mixing
    assert ranks[0]["package_warnings"] == ranks[1]["package_warnings"] == []
    assert ranks[0]["dtensor_warnings"] == ranks[1]["dtensor_warnings"] == []
    # λ learned, then hardened to λ* = c/1e-3 on every rank alike
    trajectory = ranks[0]["trajectory"]
    assert trajectory == ranks[1]["trajectory"] and len(trajectory) == 8
    assert any(v != 1.0 for v in trajectory[1].values())  # λ moved off 1 before hardening
    assert all(abs(v - 169.9712) < 1e-3 for v in trajectory[-1].values())
    assert all(r["hidden_act"] == "relu" for r in ranks)
    # the naive-swap baseline's weights (taken at hardening start) are full tensors, on every rank
    for r in ranks:
        baseline = r["baseline_shapes"]
        assert {k: v for k, v in baseline.items() if "lambda_raw" not in k} == ranks[0]["release_shapes"]
        assert [v for k, v in baseline.items() if "lambda_raw" in k] == [[1], [1]]
    assert (tmp_path / "pre_hardening_weights.safetensors").is_file()
    # the gathered release loads in stock transformers (no package import) and gives the sharded model's logits
    run_python(
        """
        import sys, torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1] + "/release").eval()
        assert "hf_lambda_gelu" not in sys.modules and model.config.hidden_act == "relu"
        assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
        expected = torch.load(sys.argv[1] + "/expected.pt")
        torch.testing.assert_close(model(input_ids=expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-6)
        """,
        str(tmp_path),
    )

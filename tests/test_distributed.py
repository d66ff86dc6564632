import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import offline_env

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_train_script.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAUNCHERS = {
    "torchrun": lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                              "--master_port", str(port)],
    "accelerate": lambda port: [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                                "--dynamo_backend", "no", "--main_process_port", str(port)],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_rank_training_keeps_lambda_in_sync_and_swaps_to_relu(tmp_path, launcher):
    env = offline_env(tmp_path, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if launcher == "accelerate":
        env["ACCELERATE_USE_CPU"] = "true"
    cmd = [*LAUNCHERS[launcher](_free_port()), SCRIPT, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "did not receive grad" not in proc.stderr and "Expected to have finished reduction" not in proc.stderr
    ranks = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    assert ranks[0]["trajectory"] == ranks[1]["trajectory"]  # λ identical on every rank, every step
    assert len(ranks[0]["trajectory"]) == 8
    # λ* at step 6 = round(0.75·8), then ReLU forwards (λ kept in the graph: no DDP reduction error)
    assert all(r["relu_forward"] == [False] * 6 + [True] * 2 for r in ranks)
    assert all(abs(v - 169.97) < 0.01 for v in ranks[0]["trajectory"][5].values())
    final = ranks[0]["trajectory"][-1]
    assert all(abs(v - 169.97) < 0.01 for v in final.values())
    assert all(r["hidden_act"] == "relu" for r in ranks)
    assert ranks[0]["metrics"]["reluize_prediction_agreement"] == ranks[1]["metrics"]["reluize_prediction_agreement"]
    assert (tmp_path / "reluization_report.json").exists()

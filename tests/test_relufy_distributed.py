"""relufy on 2 CPU ranks (gloo): the CLI under ``accelerate launch`` (DDP), the refit road under DDP, and FSDP2
with the teacher sharded like the student (``fully_shard`` directly: through the Trainer on CPU accelerate would
silently run DDP, PLATFORM.md). The worker script is tests/relufy_dist_script.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env
from safetensors.torch import load_file
from test_relufy_cli import _classifier_dir, _texts

from hf_lambda_gelu.cli import main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("relufy_dist_script.py")
#: Max abs weight difference allowed between the 2-rank DDP twin and the 1-process twin. Measured 7.7e-5 after 4
#: AdamW steps at lr 1e-3 (Adam amplifies the all-reduce's rounding on near-zero gradients), while the steps move
#: weights by 2.5e-3: a wrong batch split or a missing all-reduce is far outside it.
DDP_TOLERANCE = 2.5e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = offline_env(tmp_path, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _torchrun(tmp_path: Path, mode: str) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT), mode,
           str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]


@pytest.mark.slow
def test_ddp_cli_twin_equals_the_single_process_twin(tmp_path, capsys):
    model, data = _classifier_dir(tmp_path), _texts(tmp_path / "data.txt", 80)  # 6 words a line: no padding
    # one process, batch 8
    assert main(["relufy", str(model), str(tmp_path / "one"), "--data", str(data), "--batch-size", "8",
                 "--max-steps", "4", "--learning-rate", "1e-3"]) == 0  # fmt: skip
    capsys.readouterr()
    # two ranks of batch 4 through the recipes' CPU DDP config: the same global batch
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "recipes/configs/cpu_ddp.yaml"),
              "--main_process_port", str(_free_port()), "-m", "hf_lambda_gelu.cli", "relufy", str(model),
              str(tmp_path / "two"), "--data", str(data), "--batch-size", "4", "--max-steps", "4", "--learning-rate", "1e-3"]  # fmt: skip
    proc = subprocess.run(launch, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "batch 4 × 2 processes" in proc.stdout + proc.stderr  # the run plan: really two ranks
    assert proc.stdout.count("written to") == 1 and proc.stdout.count("top-1 agreement") == 1  # rank 0 alone
    one, two = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    original = load_file(model / "model.safetensors")
    assert one.keys() == two.keys()
    diff = max(float((one[k] - two[k]).abs().max()) for k in one)
    moved = max(float((one[k] - original[k]).abs().max()) for k in one if k in original)
    assert diff <= DDP_TOLERANCE < moved / 5, (diff, moved)
    assert json.loads((tmp_path / "two" / "config.json").read_text())["hidden_act"] == "relu"


@pytest.mark.slow
def test_refit_road_runs_on_every_rank_and_the_ranks_agree(tmp_path):
    ranks = _torchrun(tmp_path, "refit")
    assert [r["world_size"] for r in ranks] == [2, 2]
    # the refit alone (no DDP broadcast to hide a difference): each rank's own, bit-identical
    assert ranks[0]["refit_digest"] == ranks[1]["refit_digest"]
    assert ranks[0]["calibration_examples"] == ranks[1]["calibration_examples"] == 24
    assert ranks[0]["twin_digest"] == ranks[1]["twin_digest"]  # then distilled under DDP, kept in step


@pytest.mark.slow
def test_fsdp2_shards_the_teacher_like_the_student_and_the_release_reloads_as_relu(tmp_path, run_python):
    ranks = _torchrun(tmp_path, "fsdp2")
    for r in ranks:
        assert r["world_size"] == 2 and r["sharded"] and not r["twin_is_sharded"]
        assert r["blocks"]["teacher"] == r["blocks"]["student"] >= 2
        whole, local = r["whole_parameters"]["teacher"], r["local_parameters"]["teacher"]
        assert 0.45 <= local / whole <= 0.55, (local, whole)  # about half per rank, not a replica
        assert local == r["local_parameters"]["student"]  # sharded like the student
        # the gathered twin = the same steps in one process on the whole batches
        assert r["max_abs_diff_to_one_process"] <= 1e-5
        assert r["hidden_act"] == "relu"
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank trained on its own half of the batch
    assert ranks[0]["twin_digest"] == ranks[1]["twin_digest"]  # every rank gathered the same twin
    run_python(
        """
        import sys, torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1] + "/release").eval()
        assert "hf_lambda_gelu" not in sys.modules and model.config.hidden_act == "relu"
        assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == model.config.num_hidden_layers
        expected = torch.load(sys.argv[1] + "/expected.pt")
        torch.testing.assert_close(model(input_ids=expected["input_ids"]).logits, expected["logits"], rtol=0, atol=1e-6)
        """,
        str(tmp_path),
    )

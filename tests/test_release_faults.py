"""A release folder survives what the fault-injection pass did to it (issue 18, items 1, 2, 3, 13, 16).

- the folder is its own filesystem (a tmpfs mount: Docker volume, PVC): saving into it, replacing the
  release there, and a writable folder inside a read-only parent;
- a save SIGKILLed at chosen points while it replaces a release leaves the old release or the new one;
- two processes saving into one folder: the second is refused while the first holds it;
- a killed save's staging folder (and the ``.OUT.staging-*`` folders earlier versions left in the parent)
  is removed by the next save, which says so;
- the card never publishes the local path of the base checkpoint.

The subprocess saves stub the release gate (a reload in a further process, tested in test_publishing.py
and test_release_gate.py): what is tested here is the folder, not the gate.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import offline_env
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from hf_lambda_gelu import LambdaGELU, convert_to_lambda_gelu
from hf_lambda_gelu.errors import ReleaseDirBusyError
from hf_lambda_gelu.release.card import build_model_card
from hf_lambda_gelu.release.commit import INTERNAL_PREFIX, STAGING_PREFIX, locked
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, check_release_dir, save_release

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "plot"]

# Saves seed 0 with a tokenizer, any other seed without one (so replacing 0 by 1 leaves stale files to remove).
# KILL: "none", "gate" (SIGKILL in the release gate, before the commit), or "NAME:N" (SIGKILL before the N-th
# call of os.NAME once the commit has started). PAUSE: "-" or a path: wait in the gate for PAUSE.go.
_SAVE = """
import os, signal, sys, time
from pathlib import Path
from types import SimpleNamespace
from hf_lambda_gelu.release import folder as release
from hf_lambda_gelu.errors import ReleaseDirBusyError
sys.path.insert(0, sys.argv[5])
from test_release_faults import make_model, make_tokenizer

out, seed, kill, pause = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def gate(model, folder, inputs):
    if kill == "gate":
        os.kill(os.getpid(), signal.SIGKILL)
    if pause != "-":
        Path(pause + ".ready").touch()
        while not Path(pause + ".go").exists():
            time.sleep(0.05)
    return SimpleNamespace(max_rel_diff=0.0, tolerance=1e-5, functional_gelus={})

release.check_reload = gate
if ":" in kill:
    name, n = kill.split(":")
    real, calls, real_commit = getattr(os, name), [0], release.commit
    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    def commit(*args, **kwargs):
        setattr(os, name, killing)
        return real_commit(*args, **kwargs)
    release.commit = commit
try:
    release.save_release(make_model(seed), out, processing_class=make_tokenizer() if seed == 0 else None)
except ReleaseDirBusyError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
"""


def make_model(seed: int) -> BertForSequenceClassification:
    """A tiny hardened λ-GELU BERT classifier (λ = 170); the seed makes its weights."""
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(WORDS)
    )
    model = convert_to_lambda_gelu(BertForSequenceClassification(config).eval())
    for module in model.modules():
        if isinstance(module, LambdaGELU):
            module.set_lambda(170.0)
    return model


def make_tokenizer() -> BertTokenizerFast:
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(WORDS)})
    assert tokenizer("good movie")["input_ids"] != tokenizer("bad plot")["input_ids"]  # words are words
    return tokenizer


def _save(out: Path, seed: int, kill: str = "none", pause: str = "-") -> subprocess.Popen:
    env = offline_env(PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", _SAVE, str(out), str(seed), kill, pause, str(ROOT / "tests")]
    return subprocess.Popen(args, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(out: Path, seed: int, kill: str = "none") -> subprocess.CompletedProcess:
    proc = _save(out, seed, kill)
    stdout, stderr = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILENAME).read_text())


def _entries(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """The old release (seed 0, with a tokenizer) and the new one (seed 1, without), saved by subprocesses."""
    base = tmp_path_factory.mktemp("releases")
    for name, seed in (("old", 0), ("new", 1)):
        done = _run(base / name, seed)
        assert done.returncode == 0, done.stderr[-3000:]
    return {"old": base / "old", "new": base / "new"}


# before the commit: the gate, the journal's rename; after it: the first file's rename, the manifest's (the
# last rename: 1 journal + 6 files + 1 manifest), the first stale file's removal
KILL_POINTS = {"gate": "old", "replace:1": "old", "replace:2": "new", "replace:8": "new", "unlink:1": "new"}


@pytest.mark.slow
@pytest.mark.parametrize(("kill", "expected"), list(KILL_POINTS.items()))
def test_a_save_killed_while_replacing_a_release_leaves_the_old_or_the_new_one(releases, tmp_path, kill, expected):
    assert len(_manifest(releases["new"])["files"]) == 6  # the kill points above count on it
    out = tmp_path / "release"
    shutil.copytree(releases["old"], out)
    done = _run(out, 1, kill)
    assert done.returncode == -9, done.stderr[-3000:]  # SIGKILLed where asked
    files = check_release_dir(out)  # finishes a committed save, then verifies every file's SHA-256
    assert _manifest(out) == _manifest(releases[expected])
    assert set(files) == _entries(releases[expected])
    assert {name for name in _entries(out) if not name.startswith(INTERNAL_PREFIX)} == set(files)  # nothing stale


@pytest.mark.slow
def test_a_second_process_saving_into_the_folder_is_refused(releases, tmp_path):
    out = tmp_path / "release"
    shutil.copytree(releases["old"], out)
    pause = tmp_path / "pause"
    first = _save(out, 1, pause=str(pause))
    try:
        deadline = time.monotonic() + 180
        while not Path(f"{pause}.ready").exists():  # the first process holds the folder, inside its gate
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.1)
        second = _run(out, 2)
        assert second.returncode == 3, second.stderr[-3000:]
        assert "is in use: another process is saving a release into it" in second.stderr
        assert _manifest(out) == _manifest(releases["old"])  # untouched by the refused save
    finally:
        Path(f"{pause}.go").touch()
    assert first.wait(timeout=180) == 0, first.communicate()[1][-3000:]
    assert check_release_dir(out) and _manifest(out) == _manifest(releases["new"])


def test_the_lock_refuses_a_save_while_held_and_dies_with_its_holder(tmp_path):
    out = tmp_path / "release"
    out.mkdir()
    with locked(out):
        with pytest.raises(ReleaseDirBusyError, match="is in use"):
            save_release(make_model(0), out)
    assert not list(out.iterdir())  # the lock file goes with the lock


@pytest.mark.slow
def test_the_next_save_removes_a_killed_saves_leftovers_and_says_so(releases, tmp_path, caplog):
    out = tmp_path / "release"
    shutil.copytree(releases["old"], out)
    assert _run(out, 1, "gate").returncode == -9  # killed in the gate: its staging folder is left
    legacy = tmp_path / ".release.staging-k2j4x9"  # what versions staging in the parent left there
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"a full model copy")
    (leftover,) = [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]
    assert _manifest(out) == _manifest(releases["old"]) and check_release_dir(out)  # the old release, intact
    caplog.set_level(logging.WARNING, logger="hf_lambda_gelu")
    save_release(make_model(1), out)
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Removed ")]
    assert sorted(removed) == sorted(
        f"Removed {path}, left by an interrupted save into {out}." for path in (leftover, legacy)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")] and check_release_dir(out)


@pytest.fixture
def mount_tmpfs():
    """Mount a small tmpfs on a folder (root only); unmounted in reverse order after the test."""
    mounted: list[Path] = []

    def mount(folder: Path, options: str = "size=64m") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_saving_into_a_mount_point_and_replacing_the_release_there(tmp_path, mount_tmpfs):
    out = mount_tmpfs(tmp_path / "volume")  # an empty mount point: a Docker volume, a PVC
    save_release(make_model(0), out, processing_class=make_tokenizer())
    first = check_release_dir(out)
    assert "tokenizer.json" in first
    save_release(make_model(1), out)  # replaced in place: nothing crosses the mount boundary
    second = check_release_dir(out)
    assert "tokenizer.json" not in second and set(second) == {p.name for p in out.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["volume"]  # nothing staged in the parent


def test_a_writable_folder_inside_a_read_only_parent(tmp_path, mount_tmpfs):
    parent = mount_tmpfs(tmp_path / "readonly")
    out = mount_tmpfs(parent / "out")
    subprocess.run(["mount", "-o", "remount,ro", str(parent)], check=True)
    with pytest.raises(OSError, match="Read-only file system"):
        (parent / "probe").touch()
    save_release(make_model(0), out)
    assert check_release_dir(out)


def test_the_card_names_a_local_base_checkpoint_by_its_hub_id_or_its_name_only(tmp_path):
    local = tmp_path / "runs" / "my-bert"
    local.mkdir(parents=True)
    model = make_model(0)
    model.config.hidden_act = "relu"
    card = build_model_card(model=model, base_model=str(local))
    assert "**Base checkpoint:** my-bert\n" in card.text and str(local.parent) not in str(card)
    assert card.data.base_model is None  # not a Hub id: not in the header
    snapshot = tmp_path / "hub" / "models--google-bert--bert-base-uncased" / "snapshots" / "86b5e0934494bd15c9632b1"
    snapshot.mkdir(parents=True)
    card = build_model_card(model=model, base_model=str(snapshot))
    assert card.data.base_model == "google-bert/bert-base-uncased"
    assert "[google-bert/bert-base-uncased](https://huggingface.co/google-bert/bert-base-uncased)" in card.text
    assert str(tmp_path) not in str(card)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_release_file_gets_the_umasks_mode(tmp_path, umask):
    """Issue 25 item 22: safetensors wrote model.safetensors 0600 while every other file was 0644, so a release
    copied to a shared server was unreadable by others."""
    from tiny_data import tiny_bert

    previous = os.umask(umask)
    try:
        out = save_release(tiny_bert(hidden_act="relu").eval(), tmp_path / "release")
    finally:
        os.umask(previous)
    files = check_release_dir(out) + [MANIFEST_FILENAME]
    assert "model.safetensors" in files
    modes = {name: stat.S_IMODE((out / name).stat().st_mode) for name in files}
    assert modes == dict.fromkeys(files, 0o666 & ~umask)

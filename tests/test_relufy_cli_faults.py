"""``hf-lambda-gelu relufy`` under attack and in careless hands (issue 25): one table of bad inputs.

Each row: the input, the fragment the one error line must hold, the exit status (1: the package's refusal;
2: argparse's, for a flag's value), and every file under the test's folder untouched (the model folder,
the data, a victim file next to them; no OUT_DIR created). Then the faults a table cannot hold: Ctrl-C, a
read-only or full disk, stale temporary folders, and the data readers' silent losses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import torch
from test_cli import assert_one_error_line
from test_relufy_cli import _classifier_dir, _sentence_transformers_dir, _texts
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from hf_lambda_gelu import ReleaseDiskFullError, relufy_cli, temp_dirs
from hf_lambda_gelu.cli import PROG, main
from hf_lambda_gelu.errors import ModelFolderError, NotAReleaseError
from hf_lambda_gelu.release import commit
from hf_lambda_gelu.release.folder import MANIFEST_FILENAME, check_release_dir
from hf_lambda_gelu.relufy_data import read_examples, sentence_transformers_files

# ------------------------------------------------------------------------------------------ set-ups


def _snapshot(root: Path) -> dict[str, str | None]:
    """Every path under ``root``: a file's SHA-256, None for a folder."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


def _modules(folder: Path, **paths: str) -> Path:
    """Rewrite an ST folder's modules.json with the module paths given (``pooling``, ``normalize``)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": paths.get("pooling", "1_Pooling"),
            "type": "sentence_transformers.models.Pooling",
        },  # fmt: skip
    ]
    if "normalize" in paths:
        modules.append({"idx": 2, "name": "2", "path": paths["normalize"], "type": "sentence_transformers.models.Normalize"})  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def _st(tmp: Path, **paths: str) -> Path:
    folder = _sentence_transformers_dir(tmp)
    (tmp / "victim").mkdir()
    (tmp / "victim" / "config.json").write_text("the user's own file")
    return _modules(folder, **paths) if paths else folder


def _st_file(name: str, text: str):
    def setup(tmp: Path) -> Path:
        folder = _st(tmp)
        (folder / name).write_text(text)
        return folder

    return setup


def _not_a_model(tmp: Path) -> Path:
    (tmp / "notes").mkdir()
    (tmp / "notes" / "notes.txt").write_text("mine")
    return tmp / "notes"


def _pooling_link_out(tmp: Path) -> Path:
    folder = _st(tmp)
    (folder / "1_Pooling" / "config.json").unlink()
    (folder / "1_Pooling" / "config.json").symlink_to(tmp / "victim" / "config.json")
    return folder


def _write(name: str, text: str):
    def setup(tmp: Path) -> Path:
        (tmp / name).write_text(text)
        return tmp / name

    return setup


def _png(path: Path, width: int, height: int, truncate: bool = False) -> None:
    """A real 2×2 PNG whose header claims ``width`` × ``height`` (CRC fixed), or cut in half."""
    from PIL import Image

    Image.new("RGB", (2, 2)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data[: len(data) // 2]) if truncate else bytes(data))


def _vit(tmp: Path) -> Path:
    torch.manual_seed(0)
    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
                       patch_size=8, num_labels=2)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(tmp / "vit")
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(tmp / "vit")
    return tmp / "vit"


def _images(tmp: Path, bad: dict) -> Path:
    folder = tmp / "images"
    folder.mkdir()
    from PIL import Image

    for i in range(12):
        Image.new("RGB", (16, 16), (i, 2 * i, 3 * i)).save(folder / f"{i:02d}.png")
    _png(folder / "05.png", **bad)
    return folder


def _truncated_weights(tmp: Path) -> Path:
    folder = _classifier_dir(tmp)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


# Each row: id, model (tmp → folder), data (tmp → file; None: 30 lines of text), OUT_DIR relative to tmp (may
# name the model, "{model}"), more flags, the error line's fragment, the exit status.
ROWS = [
    # 1. paths in a sentence-transformers folder that leave it
    (
        "modules-pooling-dotdot",
        lambda t: _st(t, pooling="../victim"),
        None,
        "out",
        [],
        "modules.json entry '1' names '../victim', which is not a sub-folder",
        1,
    ),  # fmt: skip
    (
        "modules-normalize-dotdot",
        lambda t: _st(t, normalize="../../evil"),
        None,
        "out",
        [],
        "modules.json entry '2' names '../../evil'",
        1,
    ),  # fmt: skip
    (
        "modules-absolute",
        lambda t: _st(t, normalize=str(t / "victim")),
        None,
        "out",
        [],
        "which is not a sub-folder or file of the model folder",
        1,
    ),  # fmt: skip
    ("modules-whole-folder", lambda t: _st(t, normalize="."), None, "out", [], "names '.'", 1),
    ("pooling-config-links-out", _pooling_link_out, None, "out", [], "links out of the model folder", 1),
    # 2. OUT_DIR and MODEL_DIR overlap, whatever the flags
    ("out-is-model", _classifier_dir, None, "{model}", ["--overwrite"], "is the model folder", 1),
    ("out-inside-model", _classifier_dir, None, "{model}/twin", ["--overwrite"], "lies inside the model folder", 1),
    ("out-contains-model", _classifier_dir, None, ".", ["--overwrite"], "contains the model folder", 1),
    # 4. OUT_DIR inside a module folder: its lock and staging would be copied into the release
    ("out-inside-st-module", _st, None, "{model}/1_Pooling/twin", [], "lies inside the model folder", 1),
    # 5, 13. numeric flags
    (
        "epochs-0",
        _classifier_dir,
        None,
        "out",
        ["--epochs", "0", "--road", "swap"],
        "--epochs=0 is invalid: on the 'swap' road it leaves the twin the naive GELU → ReLU swap",
        1,
    ),  # fmt: skip
    ("epochs-0-lambda", _classifier_dir, None, "out", ["--epochs", "0", "--road", "lambda"], "use --road refit", 1),
    (
        "max-steps-0",
        _classifier_dir,
        None,
        "out",
        ["--max-steps", "0", "--road", "swap"],
        "--max-steps=0 is invalid",
        1,
    ),
    (
        "learning-rate-0",
        _classifier_dir,
        None,
        "out",
        ["--learning-rate", "0", "--road", "swap"],
        "--learning-rate=0 is invalid",
        1,
    ),
    ("epochs-negative", _classifier_dir, None, "out", ["--epochs", "-1"], "argument --epochs: must be > 0", 2),
    ("epochs-nan", _classifier_dir, None, "out", ["--epochs", "nan"], "argument --epochs: must be > 0 and finite", 2),
    ("epochs-inf", _classifier_dir, None, "out", ["--epochs", "inf"], "argument --epochs: must be > 0 and finite", 2),
    (
        "max-steps-negative",
        _classifier_dir,
        None,
        "out",
        ["--max-steps", "-5"],
        "argument --max-steps: must be a positive integer",
        2,
    ),  # fmt: skip
    (
        "learning-rate-nan",
        _classifier_dir,
        None,
        "out",
        ["--learning-rate", "nan"],
        "argument --learning-rate: must be > 0",
        2,
    ),  # fmt: skip
    (
        "learning-rate-negative",
        _classifier_dir,
        None,
        "out",
        ["--learning-rate", "-1"],
        "argument --learning-rate: must be > 0",
        2,
    ),  # fmt: skip
    (
        "batch-size-0",
        _classifier_dir,
        None,
        "out",
        ["--batch-size", "0"],
        "argument --batch-size: must be a positive integer",
        2,
    ),  # fmt: skip
    ("batch-size-negative", _classifier_dir, None, "out", ["--batch-size", "-3"], "argument --batch-size", 2),
    ("max-length-0", _classifier_dir, None, "out", ["--max-length", "0"], "argument --max-length", 2),
    ("max-length-negative", _classifier_dir, None, "out", ["--max-length", "-1"], "argument --max-length", 2),
    (
        "max-length-over-positions",
        _classifier_dir,
        None,
        "out",
        ["--max-length", "1024"],
        "--max-length=1024 is invalid: the model has 512 positions",
        1,
    ),  # fmt: skip
    ("task-alpha-nan", _classifier_dir, None, "out", ["--task-alpha", "nan"], "argument --task-alpha", 2),
    # 8. JSON rows that are not objects
    *[
        (
            f"jsonl-{name}",
            _classifier_dir,
            _write("d.jsonl", f'{{"text": "the cat"}}\n{line}\n'),
            "out",
            [],
            f"line 2 is {line}, not a JSON object",
            1,
        )  # fmt: skip
        for name, line in (("number", "5"), ("null", "null"), ("string", '"text"'), ("array", '["the", "cat"]'))
    ],
    (
        "json-array-of-non-objects",
        _classifier_dir,
        _write("d.json", "[5, 6]"),
        "out",
        [],
        "is 5, not a JSON object",
        1,
    ),  # fmt: skip
    # 9. labels that are not label names or integer ids
    *[
        (
            f"label-{name}",
            _classifier_dir,
            _write(
                "d.jsonl",
                "".join(f'{{"text": "the cat {i}", "label": {label if i == 27 else 0}}}\n' for i in range(30)),
            ),
            "out",
            ["--label-column", "label"],
            f"Label {shown} is neither a label name nor an integer id",
            1,
        )  # fmt: skip
        for name, label, shown in (("list", "[1]", "[1]"), ("float", "1.7", "1.7"), ("bool", "true", "True"))
    ],
    # 10. images
    (
        "image-bomb",
        _vit,
        lambda t: _images(t, {"width": 100000, "height": 100000}),
        "out",
        [],
        "05.png': it cannot be read as an image",
        1,
    ),  # fmt: skip
    (
        "image-truncated",
        _vit,
        lambda t: _images(t, {"width": 16, "height": 16, "truncate": True}),
        "out",
        [],
        "05.png': it cannot be read as an image",
        1,
    ),  # fmt: skip
    # 11. weights that do not open
    ("truncated-safetensors", _truncated_weights, None, "out", [], "model.safetensors' is truncated or corrupt", 1),
    # 12. malformed JSON in a sentence-transformers folder
    (
        "modules-json-malformed",
        _st_file("modules.json", "[{"),
        None,
        "out",
        [],
        "modules.json': it cannot be read as JSON",
        1,
    ),  # fmt: skip
    (
        "pooling-json-malformed",
        _st_file("1_Pooling/config.json", "{"),
        None,
        "out",
        [],
        "1_Pooling/config.json': it cannot be read as JSON",
        1,
    ),  # fmt: skip
    (
        "modules-json-object",
        _st_file("modules.json", "{}"),
        None,
        "out",
        [],
        "holds a dict, not a list",
        1,
    ),  # fmt: skip
    # 13. a folder that is not a model
    ("no-config-json", _not_a_model, None, "out", [], "is not a model folder: it has no config.json", 1),  # fmt: skip
    # 16. text that is not a string
    (
        "jsonl-text-list",
        _classifier_dir,
        _write("d.jsonl", '{"text": ["the", "cat"]}\n'),
        "out",
        [],
        'line 1: \'text\' is ["the", "cat"], not a string',
        1,
    ),  # fmt: skip
    # 18. OUT_DIR below a file
    ("out-below-a-file", _classifier_dir, None, "victim.txt/twin", [], "would be created below the file", 1),
]


@pytest.mark.parametrize(("model", "data", "out", "flags", "fragment", "code"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])  # fmt: skip
def test_bad_input_is_one_line_and_touches_no_file(tmp_path, capsys, model, data, out, flags, fragment, code):
    model_dir = model(tmp_path)
    data_path = data(tmp_path) if data else _texts(tmp_path / "t.txt", 30)
    (tmp_path / "victim.txt").write_text("the user's own file")
    out_dir = tmp_path / out.format(model=model_dir.relative_to(tmp_path))
    before = _snapshot(tmp_path)
    capsys.readouterr()  # the set-up's progress bars
    argv = ["relufy", str(model_dir), str(out_dir), "--data", str(data_path), *flags]
    if code == 2:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert fragment in err.strip().splitlines()[-1], err
    else:
        assert main(argv) == 1
        assert_one_error_line(capsys.readouterr().err, fragment)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["convert", "reluize", "export"])
@pytest.mark.parametrize(("out", "fragment"), [("{model}", "is the model folder"), ("{model}/sub", "lies inside")])
def test_other_commands_refuse_out_overlapping_the_model(tmp_path, capsys, command, out, fragment):
    model_dir = _classifier_dir(tmp_path)
    before = _snapshot(tmp_path)
    argv = [command, str(model_dir), out.format(model=model_dir), "--overwrite"]
    assert main(argv) == 1
    assert_one_error_line(capsys.readouterr().err, fragment, "no flag allows it")
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ beyond the table


def test_ctrl_c_is_one_line_exit_130_nothing_written(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(relufy_cli, "relufy", interrupted)
    model_dir = _classifier_dir(tmp_path)
    argv = ["relufy", str(model_dir), str(tmp_path / "out"), "--data", str(_texts(tmp_path / "t.txt", 30))]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == f"{PROG}: interrupted, nothing written"
    assert not (tmp_path / "out").exists()


@pytest.fixture
def mount(tmp_path):
    """Mount a tmpfs with the options given (needs root; skipped otherwise); unmounted after the test."""
    mounted = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], check=True)


def test_read_only_out_dir_is_refused_before_the_model_loads(tmp_path, capsys, mount, monkeypatch):
    read_only = mount("size=1m,ro")
    monkeypatch.setattr(relufy_cli, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    argv = ["relufy", str(_classifier_dir(tmp_path)), str(read_only / "twin"), "--data", str(_texts(tmp_path / "t.txt", 30))]  # fmt: skip
    assert main(argv) == 1
    assert_one_error_line(capsys.readouterr().err, "is read-only for this user")


def test_disk_full_while_the_release_is_written_keeps_the_old_release(tmp_path, capsys, mount):
    disk = mount("size=600k")  # the tiny classifier's weights (~140 KiB) fit once, not twice with the ballast below
    model_dir = _classifier_dir(tmp_path)
    out = disk / "twin"
    argv = ["relufy", str(model_dir), str(out), "--data", str(_texts(tmp_path / "t.txt", 30)), "--max-steps", "1"]
    assert main(argv) == 0
    release = _snapshot(out)
    (disk / "ballast").write_bytes(b"\0" * (shutil.disk_usage(disk).free - 60_000))
    capsys.readouterr()
    assert main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's progress bar
    assert_one_error_line(last, "No space left while writing the release", "the previous release in it is kept")
    assert _snapshot(out) == release
    assert check_release_dir(out)


def test_disk_full_error_is_an_oserror_with_enospc():
    import errno

    err = ReleaseDiskFullError("out", 1024, previous=False)
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC and "nothing of the release was written" in str(err)


def test_stale_temp_folders_of_killed_runs_are_removed_live_ones_kept(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    prefix = relufy_cli.RELUFY_TEMP_PREFIX
    stale_empty = tmp_path / f"{prefix}killed"  # killed before it was locked: no lock file
    stale_empty.mkdir()
    stale_reload = tmp_path / "hf-lambda-gelu-reload-killed"
    stale_reload.mkdir()
    (stale_reload / "inputs0.pt").write_bytes(b"x")
    (stale_reload / "jobs0.json").write_text("[]")
    (stale_reload / ".lock").write_text("")
    old = time.time() - 60
    for path in (stale_empty, stale_reload):
        os.utime(path, (old, old))
    with temp_dirs.locked_temp_dir(prefix) as live:  # a live run, started earlier, holds its lock
        os.utime(live, (old, old))
        with temp_dirs.locked_temp_dir(prefix):
            pass
        assert not stale_empty.exists() and Path(live).is_dir()
        with temp_dirs.locked_temp_dir("hf-lambda-gelu-reload-"):
            pass
        assert not stale_reload.exists()
    assert not Path(live).exists()
    assert sum("left by an earlier run that was killed" in r.getMessage() for r in caplog.records) == 2


def test_a_relufy_run_removes_what_killed_runs_left_in_tmpdir(tmp_path, monkeypatch):
    model_dir, data = _classifier_dir(tmp_path), _texts(tmp_path / "t.txt", 30)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(tmp))
    left = [tmp / "hf-lambda-gelu-relufy-killed", tmp / "hf-lambda-gelu-reload-killed"]
    for folder in left:
        folder.mkdir()
        (folder / "jobs0.json").write_text("[]")
        os.utime(folder, (time.time() - 60, time.time() - 60))
    argv = ["relufy", str(model_dir), str(tmp_path / "out"), "--data", str(data), "--max-steps", "1"]
    assert main(argv) == 0
    assert not any(folder.exists() for folder in left)
    assert not list(tmp.glob("hf-lambda-gelu-*"))  # the run's own are gone too


def test_a_young_unlocked_temp_folder_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    young = tmp_path / "hf-lambda-gelu-relufy-young"
    young.mkdir()
    assert temp_dirs.remove_stale_temp_dirs("hf-lambda-gelu-relufy-", time.time() - 60) == []
    assert young.is_dir()


# ----------------------------------------------------------------------- data read as it is written


def test_csv_keeps_quoted_line_breaks_and_drops_a_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes('\ufefftext,label\n"the cat\nsat",pos\nold ships,neg\n'.encode())
    examples = read_examples(path, label_column="label")
    assert examples.inputs == ["the cat\nsat", "old ships"] and examples.labels == ["pos", "neg"]


def test_a_json_array_of_objects_is_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "the cat"}, {"text": "old ships"}]))
    assert read_examples(path).inputs == ["the cat", "old ships"]


# -------------------------------------------------------------- files copied from a folder we did not write


def test_sentence_transformers_files_never_copies_hidden_release_files(tmp_path):
    folder = _sentence_transformers_dir(tmp_path)
    (folder / "1_Pooling" / "twin" / f"{commit.STAGING_PREFIX}x").mkdir(parents=True)
    (folder / "1_Pooling" / "twin" / f"{commit.STAGING_PREFIX}x" / "config.json").write_text("{}")
    (folder / "1_Pooling" / "twin" / ".hf-lambda-gelu.lock").write_text("")
    staging = tmp_path / "staging"
    staging.mkdir()
    copied = sentence_transformers_files(folder, staging)
    assert "1_Pooling/config.json" in copied
    assert not any(commit.is_internal(name) for name in copied)
    assert not list(staging.rglob(".hf-lambda-gelu*"))


def test_sentence_transformers_files_never_replaces_the_release_own_files(tmp_path):
    folder = _modules(_sentence_transformers_dir(tmp_path), normalize="2_Normalize")
    (folder / "2_Normalize").mkdir()
    (folder / "2_Normalize" / "x.json").write_text("{}")
    staging = tmp_path / "staging"
    (staging / "2_Normalize").mkdir(parents=True)
    (staging / "2_Normalize" / "x.json").write_text("the release's")
    with pytest.raises(ModelFolderError, match="would replace the release's own '2_Normalize/x.json'"):
        sentence_transformers_files(folder, staging)
    assert (staging / "2_Normalize" / "x.json").read_text() == "the release's"


def test_a_manifest_listing_hidden_files_is_not_a_release(tmp_path):
    model_dir = _classifier_dir(tmp_path)
    out = tmp_path / "out"
    assert main(["relufy", str(model_dir), str(out), "--data", str(_texts(tmp_path / "t.txt", 30)), "--max-steps", "1"]) == 0  # fmt: skip
    manifest = json.loads((out / MANIFEST_FILENAME).read_text())
    (out / "sub").mkdir()
    (out / "sub" / ".hf-lambda-gelu.lock").write_text("")
    manifest["files"].append("sub/.hf-lambda-gelu.lock")
    manifest["sha256"]["sub/.hf-lambda-gelu.lock"] = hashlib.sha256(b"").hexdigest()
    (out / MANIFEST_FILENAME).write_text(json.dumps(manifest))
    with pytest.raises(NotAReleaseError, match="hidden files"):
        check_release_dir(out)

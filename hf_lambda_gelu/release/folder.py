"""Release folders of ReLU-ized models: write, check and list the files of one release.

A release folder holds exactly one ReLU-ized model: the ``save_pretrained`` files (config says
``"relu"``), the tokenizer/processor if given, ``README.md`` (the model card),
``hardness_profile.png``/``.json``, ``reluization_report.json`` and ``lambda_gelu_release.json``, a
manifest listing the release's files (it marks the folder as a release and is written last).

Why the manifest lists every file with its digest, how the folder is staged and gated, and what
happens to other files in it: docs/design.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from torch import nn
from transformers import BaseImageProcessor, FeatureExtractionMixin, PreTrainedTokenizerBase, ProcessorMixin

from ..activation import has_lambda_gelu
from ..config import CONFIG_KEY
from ..config_fields import activation_fields, says_relu
from ..errors import (
    GELURemnantsError,
    InvalidSettingError,
    NotAReleaseError,
    NotReluModelError,
    OutputDirOverlapError,
    ReleaseDirNotEmptyError,
    ReleaseDiskFullError,
    ReloadCheckedFileError,
)
from ..gelu_remnants import hard_coded_gelus
from ..guards import _disk_full
from ..reluize import DEFAULT_RELU_TOLERANCE, ReluizeReport, reluize
from .card import build_model_card, resolve_target_lambda
from .commit import STAGING_PREFIX, commit, is_internal, locked, needs_recovery, recover, replace_file
from .gate import check_reload, dummy_inputs
from .plots import save_profile_json, save_profile_plot

__all__ = [
    "CARD_FILENAME",
    "MANIFEST_FILENAME",
    "PROFILE_JSON_FILENAME",
    "PROFILE_PLOT_FILENAME",
    "REPORT_FILENAME",
    "add_release_files",
    "check_output_dir",
    "check_release_dir",
    "check_separate_dirs",
    "reluize_for_release",
    "save_release",
]

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = "lambda_gelu_release.json"
CARD_FILENAME = "README.md"
REPORT_FILENAME = "reluization_report.json"
PROFILE_PLOT_FILENAME = "hardness_profile.png"
PROFILE_JSON_FILENAME = "hardness_profile.json"
_MANIFEST_FORMAT = "hf-lambda-gelu-release"
_CARD_ARGS_SET_HERE = ("model", "base_model", "report", "profile", "plot_filename", "processor_auto_class")


def reluize_for_release(
    model: nn.Module, *, report: ReluizeReport | None = None, tolerance: float | None = DEFAULT_RELU_TOLERANCE
) -> ReluizeReport:
    """ReLU-ize ``model`` in place and return the release report completed with what the swap knows.

    The swap's own report (:func:`hf_lambda_gelu.reluize`) fills what ``report`` lacks: the layers
    swapped, ``lambdas`` (the hardness profile at the swap), ``error_bounds`` (c/λ per layer; the
    worst is ``max_error_bound``), ``unhardened`` (the bound exceeds ``tolerance``: a naive swap,
    warned about), and under ``settings`` the ``relu_tolerance`` and the ``lambda_init`` /
    ``lambda_temperature`` recorded in the model's config.

    Args:
        model: a model with λ-GELU activations.
        report: the training's report (its measurements are kept), if any; not modified.
        tolerance: ε for the hardened/naive verdict (see :func:`hf_lambda_gelu.reluize`).

    Raises:
        NotLambdaGELUModelError: the model has no λ-GELU module.

    >>> from transformers import BertConfig, BertModel
    >>> import hf_lambda_gelu
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> model = hf_lambda_gelu.convert_to_lambda_gelu(BertModel(cfg))
    >>> report = reluize_for_release(model, tolerance=None)
    >>> len(report.lambdas), sorted(report.settings)
    (2, ['lambda_init', 'lambda_temperature'])
    """
    recorded = getattr(getattr(model, "config", None), CONFIG_KEY, None) or {}
    swap = reluize(model, tolerance=tolerance)
    merged = dataclasses.replace(report) if report is not None else ReluizeReport()
    merged.swapped = merged.swapped or swap.swapped
    merged.lambdas = merged.lambdas or swap.lambdas
    merged.error_bounds = merged.error_bounds or swap.error_bounds
    if merged.unhardened is None:
        merged.tolerance, merged.unhardened = swap.tolerance, swap.unhardened
    settings = dict(merged.settings)
    if swap.tolerance is not None:
        settings.setdefault("relu_tolerance", swap.tolerance)
    for name in ("lambda_init", "lambda_temperature"):
        if name in recorded:
            settings.setdefault(name, recorded[name])
    merged.settings = settings
    return merged


def _file_mode() -> int:
    """The mode of a file newly created by this process: 0666 less the umask (e.g. 0644 under umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _release_files(folder: Path) -> set[str]:
    """Files in ``folder`` (relative paths), without the lock, journal and staging of a save."""
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return {name for name in names if not is_internal(name)}


def _settle(folder: Path, *, leftovers: bool = True) -> None:
    """Finish a committed save into ``folder`` (and remove the staging of killed ones) under the folder's lock."""
    if folder.is_dir() and needs_recovery(folder, leftovers=leftovers):
        with locked(folder):
            recover(folder)


def _load_manifest(folder: Path) -> dict | None:
    """The release manifest in ``folder``, or None if it holds none."""
    try:
        manifest = json.loads((folder / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == _MANIFEST_FORMAT else None


def _read_manifest(folder: Path) -> list[str] | None:
    """Files of the release in ``folder`` (manifest included), or None if it holds no release manifest."""
    manifest = _load_manifest(folder)
    return None if manifest is None else [*manifest.get("files", []), MANIFEST_FILENAME]


def check_output_dir(output_dir: str | os.PathLike, *, overwrite: bool = False) -> list[str]:
    """Check that :func:`save_release` may write to ``output_dir`` (call it early, before long work).

    Args:
        output_dir: the release folder.
        overwrite: allow files that are not a previous release (see :func:`save_release`).

    Returns:
        The files of a previous release in the folder (``save_release`` replaces them).

    A save into the folder that was interrupted is finished (after its commit point) or its leftovers
    are removed (before it), with a warning (see :mod:`hf_lambda_gelu.release.commit`).

    Raises:
        ReleaseDirNotEmptyError: other files are in the way and ``overwrite`` is False.
        ReleaseDirBusyError: another process is saving a release into the folder right now.
        NotADirectoryError: ``output_dir``, or the nearest of its parents that exists, is a file.
        PermissionError: the folder (or, for a new one, the nearest parent that exists) is not writable.

    >>> check_output_dir("a-new-folder")
    []
    """
    folder = Path(output_dir)
    _check_writable(folder)
    if not folder.exists():
        return []
    _settle(folder)
    previous, foreign = _scan(folder, overwrite=overwrite)
    # the reports LambdaGELUTrainer writes into its output_dir are the release's own: rewritten, not "unrelated"
    unrelated = [
        name for name in foreign if name not in (REPORT_FILENAME, PROFILE_PLOT_FILENAME, PROFILE_JSON_FILENAME)
    ]
    if unrelated:
        logger.warning(
            "Writing the release next to %d unrelated file(s) in %s: same-named ones are replaced by the release's, "
            "the others are left alone and not uploaded.",
            len(unrelated),
            folder,
        )
    return previous


def _check_writable(folder: Path) -> None:
    """Refuse a release folder that cannot be written: it, or the nearest parent that exists, is a file or read-only."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = (
            "exists and is not a folder" if existing == folder else f"would be created below the file {str(existing)!r}"
        )
        raise NotADirectoryError(f"Release folder {str(folder)!r} {what}; choose another path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Release folder {str(folder)!r} cannot be written: {str(existing)!r} is read-only for this user; choose a "
            "folder you can write to."
        )


def check_separate_dirs(model_dir: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Refuse an output folder that is the model folder, lies inside it or contains it (whatever the flags).

    Args:
        model_dir: the input model folder (a Hub id or a file: nothing to check).
        output_dir: the folder the command writes.

    Raises:
        OutputDirOverlapError: the two overlap (links resolved).

    >>> check_separate_dirs("my-model", "my-model-relu")
    """
    if not Path(model_dir).is_dir():
        return
    model, out = Path(model_dir).resolve(), Path(output_dir).resolve()
    if out == model:
        raise OutputDirOverlapError(output_dir, model_dir, "is")
    if out.is_relative_to(model):
        raise OutputDirOverlapError(output_dir, model_dir, "lies inside")
    if model.is_relative_to(out):
        raise OutputDirOverlapError(output_dir, model_dir, "contains")


def _scan(folder: Path, *, overwrite: bool) -> tuple[list[str], list[str]]:
    """The previous release's files in ``folder`` and the other files; refused if there are others and no overwrite."""
    present = _release_files(folder)
    previous = set(_read_manifest(folder) or []) & present
    foreign = sorted(present - previous)
    if foreign and not overwrite:
        raise ReleaseDirNotEmptyError(folder, foreign)
    return sorted(previous), foreign


def _json_scalar(value: Any) -> Any:
    """numpy / torch scalars in reports (``.item()``)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Report value {value!r} of type {type(value).__name__} is not JSON serializable.")


def _processor_auto_class(processing_class: Any) -> str:
    for cls, auto_class in (
        (ProcessorMixin, "AutoProcessor"),
        (PreTrainedTokenizerBase, "AutoTokenizer"),
        (BaseImageProcessor, "AutoImageProcessor"),
        (FeatureExtractionMixin, "AutoFeatureExtractor"),
    ):
        if isinstance(processing_class, cls):
            return auto_class
    return "AutoProcessor"


def save_release(
    model: nn.Module,
    output_dir: str | os.PathLike,
    *,
    processing_class: Any = None,
    base_model: str | None = None,
    report: ReluizeReport | None = None,
    profile: dict[str, float] | None = None,
    card_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    allow_gelu_remnants: bool = False,
    inputs: dict[str, Any] | None = None,
    add_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete, checked ReLU release folder (model, processor, card, profile plot/JSON, report, manifest).

    A model that still has λ-GELU modules is ReLU-ized **in place** first (its hardness profile is
    recorded before the swap, see :func:`reluize_for_release`). The release is written to a staging
    folder inside ``output_dir``, reloaded there in a fresh process with stock transformers and compared
    with ``model`` (the release gate), and only then committed into ``output_dir`` with its manifest
    (:mod:`hf_lambda_gelu.release.commit`: if the save is killed, the folder keeps the previous release or
    gets the new one; never a mix, never nothing).

    Args:
        model: the trained λ-GELU model, or an already ReLU-ized one (config must say ``"relu"``).
        output_dir: the release folder: new, empty, or holding a previous release (which is replaced).
        processing_class: tokenizer / image processor / processor to ship with the model.
        base_model: the checkpoint training started from (Hub id or path), for the card.
        report: the swap's :class:`~hf_lambda_gelu.reluize.ReluizeReport` (e.g. ``trainer.reluization_report``);
            written as ``reluization_report.json``.
        profile: layer → λ at the swap (default: ``report.lambdas``, taken from the model before the swap
            when ``save_release`` swaps it).
        card_kwargs: more keyword arguments for :func:`hf_lambda_gelu.release.card.build_model_card`
            (``dataset_names``, ``eval_dataset``, ``pipeline_tag``, ``license``, ``model_name``,
            ``repo_id``, ``settings``, ``extra_text``).
        overwrite: also write into a non-empty folder that is not a previous release.
        allow_gelu_remnants: release a model that keeps GELUs no config field controls (listed in
            the report and the card) instead of refusing it.
        inputs: a real batch for the release gate (default: a dummy batch from the config).
        add_files: writes more files into the staging folder before the manifest (they are part of the
            release, hashed and committed with it; a ``README.md`` it writes replaces the card), e.g.
            :func:`hf_lambda_gelu.release.twin.save_twin_release`'s fidelity report and card.

    Returns:
        The release folder.

    Raises:
        ReleaseDirNotEmptyError: ``output_dir`` holds other files and ``overwrite`` is False.
        ReleaseDirBusyError: another process is saving a release into ``output_dir`` right now.
        NotReluModelError: the model has no λ-GELU module and its config does not say ``"relu"``.
        GELURemnantsError: GELUs no config field controls remain and ``allow_gelu_remnants`` is False.
        ReleaseReloadError: the saved release does not reload as ``model`` (nothing is written to ``output_dir``).
        ReleaseDiskFullError: the device ran out of space while the release was written (the folder keeps the
            previous release, if any).
        InvalidSettingError: ``card_kwargs`` names an argument this function sets itself.

    >>> import hf_lambda_gelu
    >>> from transformers import BertConfig, BertModel
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    >>> model = hf_lambda_gelu.convert_to_lambda_gelu(BertModel(cfg), hf_lambda_gelu.LambdaGELUConfig(lambda_init=170.0))
    >>> save_release(model, "release", base_model="google-bert/bert-base-uncased")  # doctest: +SKIP
    PosixPath('release')
    """
    card_kwargs = dict(card_kwargs or {})
    clashing = sorted(set(card_kwargs) & set(_CARD_ARGS_SET_HERE))
    if clashing:
        raise InvalidSettingError(
            "card_kwargs", clashing, "save_release sets these itself; pass them as its own arguments."
        )
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite=overwrite)
    if has_lambda_gelu(model):
        report = reluize_for_release(model, report=report)
    config = getattr(model, "config", None)
    if not says_relu(config) or has_lambda_gelu(model):
        raise NotReluModelError(type(model).__name__, activation_fields(config))
    profile = profile if profile is not None else (report.lambdas if report is not None else None) or None

    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    previous: list[str] = []
    try:
        with locked(output_dir):
            recover(output_dir)  # a save killed since check_output_dir
            previous, _ = _scan(output_dir, overwrite=overwrite)
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
            try:
                files, manifest = _stage(
                    staging, model, processing_class, base_model, report, profile, card_kwargs,
                    allow_gelu_remnants=allow_gelu_remnants, inputs=inputs, add_files=add_files,
                )  # fmt: skip
                (staging / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
                commit(output_dir, staging, files, MANIFEST_FILENAME, previous)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException as err:
        if created:  # leave no empty folder behind (the lock file is gone with the lock)
            with suppress(OSError):
                output_dir.rmdir()
        device = output_dir if output_dir.exists() else output_dir.parent
        if isinstance(err, Exception) and _disk_full(err, str(device)):
            raise ReleaseDiskFullError(output_dir, shutil.disk_usage(device).free, bool(previous)) from err
        raise
    logger.info("Wrote the ReLU release (%d files, reload check passed) to %s.", len(files) + 1, output_dir)
    return output_dir


def _stage(
    staging: Path,
    model: nn.Module,
    processing_class: Any,
    base_model: str | None,
    report: ReluizeReport | None,
    profile: dict[str, float] | None,
    card_kwargs: dict[str, Any],
    *,
    allow_gelu_remnants: bool,
    inputs: dict[str, Any] | None,
    add_files: Callable[[Path], None] | None,
) -> tuple[list[str], dict[str, Any]]:
    """Write the release into ``staging``, pass it through the release gate; return its files and manifest."""
    model.save_pretrained(staging)
    checked = {name: _sha256(staging / name) for name in sorted(_release_files(staging))}
    gate = check_reload(model, staging, inputs=inputs if inputs is not None else dummy_inputs(model))
    remnants = {**hard_coded_gelus(model), **gate.functional_gelus}
    if remnants:
        if not allow_gelu_remnants:
            raise GELURemnantsError(type(model).__name__, remnants)
        report = dataclasses.replace(report or ReluizeReport(), gelu_remnants=remnants)
    _write_release_extras(staging, model, processing_class, base_model, report, profile, card_kwargs)
    if add_files is not None:
        add_files(staging)
    files = sorted(_release_files(staging))
    mode = _file_mode()
    for name in files:  # safetensors writes 0600: every release file gets the mode a new file gets here
        os.chmod(staging / name, mode)
    manifest = {
        "format": _MANIFEST_FORMAT,
        "files": files,
        "sha256": {name: checked.get(name) or _sha256(staging / name) for name in files},  # every file: verified
        "reload_check": {
            "passed": True,
            "max_rel_diff": gate.max_rel_diff,
            "tolerance": gate.tolerance,
            "sha256": checked,  # the model files the gate reloaded: never recorded again once changed
        },
    }
    return files, manifest


def _write_release_extras(
    folder: Path,
    model: nn.Module,
    processing_class: Any,
    base_model: str | None,
    report: ReluizeReport | None,
    profile: dict[str, float] | None,
    card_kwargs: dict[str, Any],
) -> None:
    """The processor, profile plot/JSON, report and card of a release, next to the saved model."""
    processor_auto_class = None
    if processing_class is not None:
        processing_class.save_pretrained(folder)
        processor_auto_class = _processor_auto_class(processing_class)
    plot_filename = None
    values = report.to_dict() if report is not None else None
    if profile:
        target = resolve_target_lambda(values, card_kwargs.get("settings"))
        learned = values and values.get("learned_lambdas")
        road = (values or {}).get("road") or {}  # the trainer's road: the plot shows it under the profile
        save_profile_plot(
            profile,
            folder / PROFILE_PLOT_FILENAME,
            target_lambda=target,
            learned=learned,
            log_history=road.get("log_history"),
            hardening_steps=road.get("hardening_steps"),
        )
        save_profile_json(profile, folder / PROFILE_JSON_FILENAME, target_lambda=target, learned=learned)
        plot_filename = PROFILE_PLOT_FILENAME
    if report is not None:
        text = json.dumps(values, indent=2, ensure_ascii=False, default=_json_scalar)
        (folder / REPORT_FILENAME).write_text(text + "\n", encoding="utf-8")
    card = build_model_card(
        model=model,
        base_model=base_model,
        report=report,
        profile=profile,
        plot_filename=plot_filename,
        processor_auto_class=processor_auto_class,
        **card_kwargs,
    )
    card.save(folder / CARD_FILENAME)


def check_release_dir(release_dir: str | os.PathLike) -> list[str]:
    """Check that a folder is a complete, gate-checked ReLU release and return the files to upload.

    The files are exactly the manifest's: only a folder written by :func:`save_release` (whose
    manifest records the passed reload check) is a release; nothing else in the folder is uploaded.
    Every listed file must have the SHA-256 the manifest records. A save into the folder that was
    killed after its commit point is finished first (see :mod:`hf_lambda_gelu.release.commit`).

    Args:
        release_dir: the folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotAReleaseError: no ``config.json``, a config that does not say ``"relu"``, no manifest or one
            without a passed reload check, a file listed in the manifest is missing or has no SHA-256 there,
            or a file's content is not the one the manifest records (model files: since the reload check).
        ReleaseDirBusyError: another process is saving a release into the folder right now.

    >>> check_release_dir("release")  # doctest: +SKIP
    ['README.md', 'config.json', 'hardness_profile.json', ..., 'model.safetensors']
    """
    folder = Path(release_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Release folder {str(folder)!r} does not exist (or is not a folder).")
    _settle(folder, leftovers=False)  # a live save's staging is not in the way of the release in place
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise NotAReleaseError(folder, "it has no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise NotAReleaseError(folder, f"its config.json is not valid JSON ({err})") from None
    if not says_relu(config):
        raise NotAReleaseError(
            folder, f"its config.json does not say 'relu' (activation fields: {activation_fields(config)})"
        )
    manifest = _load_manifest(folder)
    if manifest is None or not (manifest.get("reload_check") or {}).get("passed"):
        raise NotAReleaseError(
            folder,
            f"it has no {MANIFEST_FILENAME} recording a passed reload check (stock transformers reloads it as the "
            "model that was saved), so nobody checked what users would download",
        )
    listed = list(manifest.get("files", []))
    hidden = [name for name in listed if is_internal(name)]
    if hidden:
        raise NotAReleaseError(folder, f"{MANIFEST_FILENAME} lists the save's own hidden files {hidden}")
    checked = manifest["reload_check"].get("sha256") or {}
    missing = [name for name in dict.fromkeys([*listed, *checked]) if not (folder / name).is_file()]
    if missing:
        raise NotAReleaseError(folder, f"files listed in {MANIFEST_FILENAME} are missing: {missing}")
    digests = manifest.get("sha256") or {}
    unhashed = [name for name in listed if name not in digests]
    if unhashed:
        raise NotAReleaseError(
            folder,
            f"{MANIFEST_FILENAME} lists {unhashed} without a SHA-256 (written by an older version, or edited by "
            "hand), so nobody can tell whether they are the files that were released; write the release again",
        )
    actual = {name: _sha256(folder / name) for name in dict.fromkeys([*listed, *checked])}
    changed = sorted(name for name, digest in checked.items() if actual[name] != digest)
    if changed:
        raise NotAReleaseError(folder, f"{changed} changed after the reload check; write the release again")
    changed = sorted(name for name in listed if actual[name] != digests[name])
    if changed:
        raise NotAReleaseError(
            folder,
            f"{changed} changed after the release was written (their SHA-256 is not the one in {MANIFEST_FILENAME}); "
            "write the release again, or, for a file edited on purpose (the card, say), record it with "
            f"hf_lambda_gelu.release.folder.add_release_files({str(folder)!r}, {changed})",
        )
    return sorted([*listed, MANIFEST_FILENAME])


def add_release_files(release_dir: str | os.PathLike, names: list[str]) -> list[str]:
    """Record files written or rewritten in a release folder after :func:`save_release` in its manifest.

    The manifest lists them (so they are uploaded) with their SHA-256 as they are now. Tools that add
    results to a release (``hf-lambda-gelu export``, ``hf-lambda-gelu sparsity``) write their files and
    the card's section, then call this with both; so can a user who edited the card by hand. The
    manifest's reload check stays valid: a model file the gate reloaded cannot be recorded again once
    it changed. A folder without a manifest (not written by ``save_release``) is left as it is.

    Args:
        release_dir: the release folder.
        names: paths relative to the folder, of files that exist.

    Returns:
        The release's files after the update (manifest excluded).

    Raises:
        FileNotFoundError: a listed file does not exist.
        ReloadCheckedFileError: a listed file is a model file the release gate checked and it changed since.
        ReleaseDirBusyError: another process is saving a release into the folder right now.

    >>> add_release_files("release", ["onnx_export_audit.json"])  # doctest: +SKIP
    ['README.md', 'config.json', ..., 'onnx_export_audit.json']
    """
    folder = Path(release_dir)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Cannot add {missing} to the release in {str(folder)!r}: no such file(s).")
    if _load_manifest(folder) is None:
        return sorted(_release_files(folder))
    with locked(folder):
        recover(folder)
        manifest = _load_manifest(folder)
        checked = manifest.get("reload_check", {}).get("sha256") or {}
        digests = {name: _sha256(folder / name) for name in dict.fromkeys(names) if name != MANIFEST_FILENAME}
        protected = sorted(name for name, digest in digests.items() if name in checked and checked[name] != digest)
        if protected:
            raise ReloadCheckedFileError(folder, protected)
        # the rest of the manifest (the reload check and its model-file digests) is kept as it is
        manifest["files"] = files = sorted(set(manifest.get("files", [])) | set(digests))
        manifest["sha256"] = {**(manifest.get("sha256") or {}), **digests}
        replace_file(folder, MANIFEST_FILENAME, json.dumps(manifest, indent=2) + "\n")
    return files

"""Where a model comes from: a local folder, or a Hub model id (with a revision) fetched once into the HF cache.

The rule for telling them apart (shared by every subcommand): an existing folder is local and must be a model
folder; a path that does not exist is only sent to the Hub when it looks like a Hub id (``owner/name``), so a
mistyped local path (``gleu``, ``./modle``, ``/data/ckpt``) is reported as missing and never looked up online.
A Hub snapshot comes down whole (weights, config, tokenizer, a sentence-transformers repo's ``modules.json``,
``1_Pooling/``...) except other frameworks' weights, and pickled weights when safetensors exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    DryRunError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModel

from .errors import InvalidSettingError, ModelSourceError
from .fidelity import Pooling
from .relufy_data import load_pooling

__all__ = ["OTHER_FRAMEWORK_FILES", "LoadedModel", "check_model_source", "check_weights", "load_model", "model_folder"]

#: Files of other frameworks (and exports) a PyTorch run never reads: not downloaded.
OTHER_FRAMEWORK_FILES = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "onnx/*", "openvino/*", "*.tflite",
                         "coreml/*", "*.mlmodel", "*.gguf")  # fmt: skip
_PICKLED_WEIGHTS = ("*.bin", "*.pth", "*.pt")


def check_model_source(value: str, markers: tuple[str, ...] = ("config.json",)) -> str:
    """``value`` as a local model folder (holding one of ``markers``, with weights that open) or a Hub model id.

    Nothing is downloaded: a Hub id is only checked for its form.

    Raises:
        ModelSourceError: a folder that is not a model folder or has corrupt weights, a file, a missing path
            that cannot be a Hub id.

    >>> check_model_source("google-bert/bert-base-uncased")
    'google-bert/bert-base-uncased'
    >>> check_model_source("gleu")
    Traceback (most recent call last):
    ...
    hf_lambda_gelu.errors.ModelSourceError: No such local folder 'gleu' (and Hub model ids look like owner/name, e.g. google-bert/bert-base-uncased).
    """
    path = Path(value).expanduser()
    if path.is_dir():
        if not any((path / marker).is_file() for marker in markers):
            raise ModelSourceError(
                f"{value!r} is not a model folder: it has no {' or '.join(markers)}. Give a checkpoint folder "
                "(config.json and the weights, as save_pretrained writes them) or a Hub model id (owner/name)."
            )
        check_weights(path)
        return str(path)
    if path.exists():
        raise ModelSourceError(f"{value!r} is a file; give a checkpoint folder or a Hub model id.")
    if "/" not in value:
        raise ModelSourceError(
            f"No such local folder {value!r} (and Hub model ids look like owner/name, e.g. google-bert/bert-base-uncased)."
        )
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise ModelSourceError(f"Checkpoint folder {value!r} does not exist (and it is not a Hub model id).") from None
    return value


def check_weights(folder: Path) -> None:
    """Refuse a folder whose ``*.safetensors`` files do not open (reads their headers only)."""
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except SafetensorError as err:
            raise ModelSourceError(
                f"{str(path)!r} is truncated or corrupt ({err}): copy, download or save the checkpoint again."
            ) from None


def model_folder(source: str, *, revision: str | None = None) -> Path:
    """The local folder of a model: ``source`` itself, or the HF-cache snapshot of the Hub id ``source``.

    Args:
        source: a local model folder or a Hub model id (``owner/name``), as ``from_pretrained`` takes.
        revision: a branch, tag or commit of a Hub id (default ``main``); not allowed with a local folder.

    Raises:
        ModelSourceError: see :func:`check_model_source`; or the Hub id cannot be fetched (offline without a
            cached copy, not on the Hub, an unknown revision), in one line with the fix.
        InvalidSettingError: a revision given with a local folder.

    >>> model_folder("my-org/bert-gelu", revision="v1.0")  # doctest: +SKIP
    PosixPath('/root/.cache/huggingface/hub/models--my-org--bert-gelu/snapshots/1f2e...')
    """
    checked = check_model_source(source)
    if Path(checked).expanduser().is_dir():
        if revision is not None:
            raise InvalidSettingError(
                "--revision", revision, f"{source!r} is a local folder; a revision is for Hub ids."
            )
        return Path(checked).expanduser()
    ignore = list(OTHER_FRAMEWORK_FILES)
    try:
        try:
            listing = snapshot_download(source, revision=revision, ignore_patterns=ignore, dry_run=True)
        except DryRunError:  # offline or unreachable: a cached snapshot, if any, is used below
            listing = []
        if any(item.filename.endswith(".safetensors") for item in listing):
            ignore += _PICKLED_WEIGHTS
        folder = Path(snapshot_download(source, revision=revision, ignore_patterns=ignore))
    except RevisionNotFoundError:
        raise ModelSourceError(
            f"Revision {revision!r} is not a branch, tag or commit of {source!r} on the Hub; check --revision."
        ) from None
    except RepositoryNotFoundError:
        raise ModelSourceError(
            f"{source!r} is not a model repo on {constants.ENDPOINT} (or it is private or gated: log in with "
            "`hf auth login`); check the id, or give a local folder."
        ) from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} cannot be reached"
        raise ModelSourceError(
            f"{source!r} is not in the local Hugging Face cache and {why}: download it once online "
            f"(`hf download {source}`), or give a local folder."
        ) from None
    return Path(check_model_source(str(folder)))


@dataclass
class LoadedModel:
    """A loaded GELU model, the folder it came from and, for a sentence-transformers folder, its pooling."""

    model: Any
    folder: Path
    pooling: Pooling | None


def load_model(source: str, *, revision: str | None = None) -> LoadedModel:
    """Load a trained model from a local folder or a Hub id, in eval mode, with the class its config names.

    A sentence-transformers folder loads as its transformer (``AutoModel``) and brings its pooling.

    Args:
        source: a local model folder or a Hub model id.
        revision: a branch, tag or commit of a Hub id.

    >>> loaded = load_model("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> loaded.pooling.mode  # doctest: +SKIP
    'mean'
    """
    folder = model_folder(source, revision=revision)
    pooling = load_pooling(folder)
    config = AutoConfig.from_pretrained(folder)
    name = next(iter(getattr(config, "architectures", None) or []), None)
    cls = AutoModel if pooling is not None or name is None else getattr(transformers, name, AutoModel)
    return LoadedModel(cls.from_pretrained(folder).eval(), folder, pooling)

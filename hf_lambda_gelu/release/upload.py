"""Upload of a release folder (:mod:`hf_lambda_gelu.release.folder`) to the Hugging Face Hub.

Exactly the manifest's files go up (other files of the repo are deleted unless ``delete_stale=False``);
a failed upload raises :class:`PushError` with every token scrubbed. Why: docs/design.md.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, get_token
from torch import nn

from ..errors import PushError
from ..reluize import ReluizeReport
from .folder import check_release_dir, save_release

__all__ = ["push_reluized", "upload_release"]

logger = logging.getLogger(__name__)

_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{16,}")
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",;]+", re.IGNORECASE)
_MAX_CAUSE_CHARS = 400


def _stored_token() -> str | None:
    """The token ``HfApi`` falls back to (``huggingface_hub.get_token()``), or None; never raises."""
    try:
        return get_token()
    except Exception:  # noqa: BLE001 - e.g. a failing OIDC exchange: then no token of it was sent either
        return None


def _secrets(token: str | None) -> set[str]:
    env = (os.environ.get(name) for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"))
    return {secret for secret in (token, *env, _stored_token()) if secret}


def _redact(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", _TOKEN_SHAPE.sub("hf_***", text))


def _texts_of(obj: Any) -> list[str]:
    """What an attribute object shows: its repr and the headers of it and of its request (HTTP responses)."""
    texts = [repr(obj)]
    holders = [obj]
    try:
        holders.append(obj.request)
    except Exception:  # noqa: BLE001 - no request, or httpx's Response.request raising when unset
        pass
    for holder in holders:
        headers = getattr(holder, "headers", None)
        if headers is not None and hasattr(headers, "items"):
            texts += [f"{key}: {value}" for key, value in headers.items()]
    return texts


def _scrub_attributes(err: BaseException, secrets: set[str]) -> None:
    """Redact string attributes (``server_message``...); drop objects that carry a secret (an HTTP response
    whose request kept the ``Authorization`` header)."""
    for name, value in list(vars(err).items()):
        if isinstance(value, str):
            setattr(err, name, _redact(value, secrets))
        elif value is not None and not isinstance(value, BaseException):
            if any(_redact(text, secrets) != text for text in _texts_of(value)):
                setattr(err, name, None)


def _scrub_exception_chain(err: BaseException, secrets: set[str]) -> None:
    """Remove secrets from ``err`` and every exception chained to it, in place: messages, notes, attributes."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(_redact(a, secrets) if isinstance(a, str) else a for a in current.args)
        if hasattr(current, "__notes__"):
            current.__notes__ = [_redact(str(note), secrets) for note in current.__notes__]
        _scrub_attributes(current, secrets)
        stack += [current.__cause__, current.__context__]


def upload_release(
    release_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    delete_stale: bool = True,
) -> str:
    """Upload a release folder to a Hub model repo (created if needed) and return the commit URL.

    Exactly the release's files go up (:func:`check_release_dir`); with ``delete_stale`` every other
    file of the repo is deleted in the same commit (see the module docstring for why).

    Args:
        release_dir: folder written by :func:`save_release` (or any folder with a ReLU ``config.json``).
        repo_id: ``"user/name"`` on the Hub.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token (default: ``$HF_TOKEN`` or the stored login). Never logged or shown.
        commit_message: the commit message (default names the package).
        delete_stale: delete the repo's files that are not part of this release.

    Raises:
        PushError: any failure of the Hub calls; the folder is kept and the message says how to retry.
        FileNotFoundError, NotAReleaseError: see :func:`check_release_dir` (before anything is sent).

    >>> upload_release("release", "me/bert-relu")  # doctest: +SKIP
    'https://huggingface.co/me/bert-relu/commit/...'
    """
    folder = Path(release_dir)
    files = check_release_dir(folder)
    logger.info("Uploading %d file(s) from %s to the Hub repo %s.", len(files), folder, repo_id)
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload ReLU-ized model (λ-GELU, hf-lambda-gelu)",
            allow_patterns=[glob.escape(name) for name in files],
            delete_patterns="*" if delete_stale else None,
        )
    except Exception as err:
        secrets = _secrets(token)
        _scrub_exception_chain(err, secrets)
        cause = _redact(" ".join(f"{type(err).__name__}: {err}".split()), secrets).rstrip(".")
        if len(cause) > _MAX_CAUSE_CHARS:
            cause = cause[: _MAX_CAUSE_CHARS - 1] + "…"
        raise PushError(folder, repo_id, cause, private) from err
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("Uploaded the release to %s.", url)
    return url


def push_reluized(
    model: nn.Module,
    repo_id: str,
    *,
    processing_class: Any = None,
    base_model: str | None = None,
    report: ReluizeReport | None = None,
    profile: dict[str, float] | None = None,
    card_kwargs: dict[str, Any] | None = None,
    release_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_gelu_remnants: bool = False,
    inputs: dict[str, Any] | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    delete_stale: bool = True,
) -> str:
    """ReLU-ize (if needed), write the release folder and upload it: :func:`save_release` + :func:`upload_release`.

    Without ``release_dir`` the release is written to a fresh temporary folder (its path is logged);
    it is removed after a successful upload and kept when the upload fails (the :class:`PushError`
    names it).

    Args:
        model: the trained λ-GELU model (ReLU-ized in place) or an already ReLU-ized one.
        repo_id: ``"user/name"`` on the Hub; also the name in the card's loading snippet.
        processing_class, base_model, report, profile, card_kwargs, overwrite, allow_gelu_remnants, inputs:
            see :func:`save_release`.
        release_dir: where to write the release (kept); default a fresh temporary folder.
        private, token, commit_message, delete_stale: see :func:`upload_release`.

    Returns:
        The URL of the Hub commit.

    Raises:
        PushError: the upload failed (the release folder is complete and kept).

    >>> push_reluized(model, "me/bert-relu", processing_class=tokenizer)  # doctest: +SKIP
    'https://huggingface.co/me/bert-relu/commit/...'
    """
    card_kwargs = {"repo_id": repo_id, **(card_kwargs or {})}
    fresh = release_dir is None
    folder = Path(tempfile.mkdtemp(prefix="hf-lambda-gelu-release-")) if fresh else Path(release_dir)
    logger.info("Writing the release for %s to %s.", repo_id, folder)
    try:
        save_release(
            model,
            folder,
            processing_class=processing_class,
            base_model=base_model,
            report=report,
            profile=profile,
            card_kwargs=card_kwargs,
            overwrite=overwrite,
            allow_gelu_remnants=allow_gelu_remnants,
            inputs=inputs,
        )
    except BaseException:
        if fresh:  # nothing worth keeping: the release was not written
            shutil.rmtree(folder, ignore_errors=True)
        raise
    url = upload_release(
        folder, repo_id, private=private, token=token, commit_message=commit_message, delete_stale=delete_stale
    )
    if fresh:
        shutil.rmtree(folder)
    return url

"""A stand-in for ``huggingface_hub.HfApi`` (no network): records calls, keeps what an upload sends."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

from huggingface_hub.utils import filter_repo_objects

from hf_lambda_gelu.release import upload

TOKEN = "hf_SECRETtoken0123456789abcdefXYZ"


class FakeHub:
    """Stands in for ``HfApi``: records the calls and keeps a copy of what an upload would send."""

    def __init__(self, remote: Path, fail_on: str | None = None) -> None:
        self.remote = remote
        self.fail_on = fail_on
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, token=None):  # HfApi(token=...)
        self.calls.append(("HfApi", {"token": token}))
        return self

    def _maybe_fail(self, method: str) -> None:
        if self.fail_on == f"{method}:http":  # what huggingface_hub raises: the response keeps the request headers
            import httpx2
            from huggingface_hub.errors import HfHubHTTPError

            request = httpx2.Request(
                "POST", "https://huggingface.co/api/x", headers={"authorization": f"Bearer {TOKEN}"}
            )
            response = httpx2.Response(401, request=request, json={"error": f"Invalid token {TOKEN}"})
            raise HfHubHTTPError(f"401 Unauthorized for {TOKEN}", response=response, server_message=f"bad {TOKEN}")
        if self.fail_on == method:
            try:
                raise ConnectionError(f"connection reset, Authorization: Bearer {TOKEN}")
            except ConnectionError as inner:
                raise RuntimeError(f"401 Client Error: Unauthorized (invalid token {TOKEN})") from inner

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        self._maybe_fail("create_repo")

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        self.calls.append(("upload_folder", {"repo_id": repo_id, "folder_path": Path(folder_path), **kwargs}))
        self._maybe_fail("upload_folder")
        folder = Path(folder_path)
        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        for name in filter_repo_objects(local, allow_patterns=allow_patterns):  # as the real upload filters
            (self.remote / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, self.remote / name)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")

    def kwargs_of(self, method: str) -> dict:
        return next(kwargs for name, kwargs in self.calls if name == method)


def install_fake_hub(monkeypatch, remote: Path, fail_on: str | None = None) -> FakeHub:
    """Patch the one HfApi name the package uses; ``remote`` receives the uploaded files."""
    fake = FakeHub(remote, fail_on=fail_on)
    remote.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(upload, "HfApi", fake)
    return fake

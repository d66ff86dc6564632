"""Stand-ins for the Hugging Face Hub (no network).

- :class:`FakeHub` / :func:`install_fake_hub`: replaces ``huggingface_hub.HfApi`` in-process; records calls and
  keeps what an upload sends.
- :func:`serve_model_repo`: serves a local folder as a Hub model repo over HTTP on 127.0.0.1 (the download
  protocol ``snapshot_download`` / ``from_pretrained`` speak), for subprocesses pointed at it with ``HF_ENDPOINT``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
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


# ------------------------------------------------------------------------------ downloads over HTTP


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _RepoHandler(http.server.BaseHTTPRequestHandler):
    """The Hub's download protocol for one model repo: repo info, the file tree and ``resolve`` (HEAD and GET)."""

    server: _RepoServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def _not_found(self) -> None:
        self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server, path = self.server, urllib.parse.urlparse(self.path).path
        self.server.requests.append(f"{self.command} {path}")
        api = f"/api/models/{server.repo_id}/"
        if path.startswith(api + "revision/"):
            if path.removeprefix(api + "revision/") not in (server.revision, server.sha):
                self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
                return
            self._json({"id": server.repo_id, "sha": server.sha, "siblings": [{"rfilename": n} for n in server.files]})
        elif path.startswith(api + "tree/"):
            self._json([{"type": "file", "path": n, "size": len(d), "oid": _git_blob_sha1(d)} for n, d in server.files.items()])  # fmt: skip
        elif path.startswith(f"/{server.repo_id}/resolve/"):
            revision, _, name = path.removeprefix(f"/{server.repo_id}/resolve/").partition("/")
            data = server.files.get(urllib.parse.unquote(name))
            if revision not in (server.revision, server.sha) or data is None:
                self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"})
                return
            headers = {"X-Repo-Commit": server.sha, "ETag": f'"{_git_blob_sha1(data)}"'}
            self._send(200, data, headers)
        else:
            self._not_found()

    do_HEAD = do_GET


class _RepoServer(http.server.ThreadingHTTPServer):
    def __init__(self, folder: Path, repo_id: str, revision: str) -> None:
        super().__init__(("127.0.0.1", 0), _RepoHandler)
        self.repo_id, self.revision = repo_id, revision
        self.files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.sha = hashlib.sha1(b"".join(self.files.values())).hexdigest()  # a 40-hex commit id for this content
        self.requests: list[str] = []


@contextlib.contextmanager
def serve_model_repo(folder: Path, repo_id: str, revision: str = "main") -> Iterator[_RepoServer]:
    """Serve ``folder`` as the Hub model repo ``repo_id`` at ``revision`` on 127.0.0.1 (an ephemeral port).

    Point a subprocess at it with ``HF_ENDPOINT=http://127.0.0.1:PORT`` (``server.endpoint``) and
    ``HF_HUB_OFFLINE=0``; ``server.requests`` lists what was asked for.
    """
    server = _RepoServer(folder, repo_id, revision)
    server.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

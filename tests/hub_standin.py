"""A local stand-in for the Hugging Face Hub that serves model repositories from folders, answering the requests
huggingface_hub's real download code makes (repository info, HEAD and ranged GET of resolve/), so that the real
client downloads, resumes and fails as it does against the Hub. Loopback only.

A repository is a folder; each file's ETag is what the Hub sends: the SHA-256 of the content for large (LFS)
files, the git blob SHA-1 for small ones. ``gated`` repositories answer 401 with the Hub's GatedRepo error code
to a request without the token in ``good_token``. ``slow`` names files served in small pieces with a pause
between them (a download that can be killed mid-file); ``gets`` records each file's GET (name, Range header).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_FROM = 1024  # files this large are served as LFS files (the Hub's own threshold is larger; any works)


def etag_of(data: bytes) -> str:
    if len(data) >= LFS_FROM:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    def __init__(self, repos: dict[str, Path], gated: tuple[str, ...] = (), slow: tuple[str, ...] = ()):
        self.repos, self.gated, self.slow = repos, set(gated), set(slow)
        self.good_token = "hf_standin_token_for_tests_only"
        self.gets: list[tuple[str, str | None]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}


def _tree_entry(name: str, path: Path) -> dict:
    data = path.read_bytes()
    entry = {"type": "file", "path": name, "size": len(data),
             "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
    if len(data) >= LFS_FROM:
        entry["lfs"] = {"oid": etag_of(data), "size": len(data), "pointerSize": 134}
    return entry


def _handler(hub: HubStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            self._answer(head=False)

        def do_HEAD(self):
            self._answer(head=True)

        def _answer(self, head: bool) -> None:
            path = unquote(urlparse(self.path).path)
            if path.startswith("/api/models/"):
                return self._info(path[len("/api/models/"):], head)
            parts = path.lstrip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._file("/".join(parts[:2]), "/".join(parts[4:]), head)
            self._json(404, {"error": "not found"}, head, code="EntryNotFound")

        def _refused(self, repo: str, head: bool) -> bool:
            if repo not in hub.repos:
                self._json(404, {"error": "Repository not found"}, head, code="RepoNotFound")
                return True
            if repo in hub.gated and self.headers.get("authorization") != f"Bearer {hub.good_token}":
                self._json(401, {"error": "Access to model is restricted"}, head, code="GatedRepo")
                return True
            return False

        def _info(self, rest: str, head: bool) -> None:
            repo = "/".join(rest.split("/")[:2])
            if self._refused(repo, head):
                return
            if "/tree/" in rest:  # list_repo_tree, recursive: every file of the repository
                return self._json(200, [_tree_entry(name, path) for name, path in hub.files(repo).items()], head)
            siblings = [{"rfilename": name} for name in hub.files(repo)]
            self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings, "private": False,
                             "gated": "manual" if repo in hub.gated else False, "tags": ["diffusers"]}, head)

        def _file(self, repo: str, name: str, head: bool) -> None:
            if self._refused(repo, head):
                return
            source = hub.files(repo).get(name)
            if source is None:
                return self._json(404, {"error": "Entry not found"}, head, code="EntryNotFound")
            data = source.read_bytes()
            start = 0
            wanted = self.headers.get("range")
            if not head:
                hub.gets.append((name, wanted))
            if wanted and not head:
                start = int(wanted.split("=")[1].split("-")[0])
            body = data[start:]
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{etag_of(data)}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            piece = 64 * 1024 if name in hub.slow else len(body) or 1
            for offset in range(0, len(body), piece):
                self.wfile.write(body[offset:offset + piece])
                if name in hub.slow:
                    self.wfile.flush()
                    time.sleep(0.01)

        def _json(self, status: int, body, head: bool, code: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", body["error"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

    return Handler

"""A stand-in for the Hugging Face hub on 127.0.0.1, for pull tests (HF_ENDPOINT points here).

It serves the few endpoints huggingface_hub and the downloader use: the repo tree listing,
`resolve` (HEAD with X-Linked-Etag / X-Linked-Size, GET with Range) and plain files. Faults can
be injected: a connection cut after N bytes, a stall, a wrong advertised sha256, no Range."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

COMMIT = "0" * 40
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)")


@dataclass
class Blob:
    source: bytes | Path
    sha256: str = ""
    cut_after: int | None = None  # the next GET ends (connection closed) after this many bytes
    stall_after: int | None = None  # the next GET stops sending after this many bytes
    advertised_sha256: str | None = None  # what the hub claims (a wrong one for tests)

    @property
    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else self.source.stat().st_size

    def read(self, start: int, end: int) -> Iterator[bytes]:
        if isinstance(self.source, bytes):
            yield self.source[start:end]
            return
        with self.source.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                block = fh.read(min(left, 1 << 20))
                if not block:
                    return
                left -= len(block)
                yield block


@dataclass
class FakeHub:
    """Repos of files, plain URLs under /files/, and a log of (method, path, Range)."""

    repos: dict[str, dict[str, Blob]] = field(default_factory=dict)
    files: dict[str, Blob] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    range_support: bool = True
    stall_seconds: float = 5.0
    url: str = ""

    def add(self, repo: str, path: str, source: bytes | Path, **faults: Any) -> Blob:
        blob = _blob(source, **faults)
        self.repos.setdefault(repo, {})[path] = blob
        return blob

    def add_file(self, name: str, source: bytes | Path, **faults: Any) -> Blob:
        blob = _blob(source, **faults)
        self.files[name] = blob
        return blob

    def ranges(self, path_suffix: str) -> list[str | None]:
        """The Range headers of the GETs whose path ends with path_suffix."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith(path_suffix)]


def _blob(source: bytes | Path, **faults: Any) -> Blob:
    digest = hashlib.sha256()
    if isinstance(source, bytes):
        digest.update(source)
    else:
        with source.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return Blob(source, digest.hexdigest(), **faults)


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, *, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            hub.requests.append((self.command, path, self.headers.get("Range")))
            tree = _TREE.match(path)
            if tree and not head:
                return self._tree(tree["repo"])
            resolve = _RESOLVE.match(path)
            if resolve:
                repo = hub.repos.get(resolve["repo"])
                if repo is None:
                    return self._error(404, "RepoNotFound")
                blob = repo.get(resolve["path"])
                if blob is None:
                    return self._error(404, "EntryNotFound")
                return self._blob(blob, head=head, hub_headers=True)
            if path.startswith("/files/") and path[7:] in hub.files:
                return self._blob(hub.files[path[7:]], head=head, hub_headers=False)
            return self._error(404, "EntryNotFound")

        def _error(self, status: int, code: str) -> None:
            body = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _tree(self, repo_id: str) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound")
            items = [
                {
                    "type": "file",
                    "oid": hashlib.sha1(p.encode()).hexdigest(),
                    "size": b.size,
                    "path": p,
                    "lfs": {
                        "oid": b.advertised_sha256 or b.sha256,
                        "size": b.size,
                        "pointerSize": 134,
                    },
                }
                for p, b in repo.items()
            ]
            body = json.dumps(items).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _blob(self, blob: Blob, *, head: bool, hub_headers: bool) -> None:
            size = blob.size
            start = 0
            wanted = self.headers.get("Range")
            m = re.fullmatch(r"bytes=(\d+)-", wanted or "")
            partial = bool(m) and hub.range_support
            if partial and m:
                start = int(m[1])
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self.send_response(206 if partial else 200)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.send_header("Content-Length", str(size - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if hub_headers:
                sha = blob.advertised_sha256 or blob.sha256
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(size))
                self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if head:
                return
            stop = size
            cut, stall = blob.cut_after, blob.stall_after
            if cut is not None and cut > start:
                blob.cut_after, stop = None, cut
            elif stall is not None and stall > start:
                blob.stall_after, stop = None, stall
            for block in blob.read(start, stop):
                self.wfile.write(block)
            self.wfile.flush()
            if stop < size:
                if stall is not None and stop == stall:
                    time.sleep(hub.stall_seconds)
                self.close_connection = True

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-transfer are what the fault tests are about


class HubServer:
    """Runs a FakeHub in a thread; use as a context manager."""

    def __init__(self, hub: FakeHub | None = None):
        self.hub = hub or FakeHub()
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self.hub))
        self.hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self.hub

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

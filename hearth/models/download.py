"""Resumable downloads into `.partial` files.

A download appends to `<name>.partial` and picks up where it stopped (HTTP Range) after a
cut connection, a stall (no byte for `stall_timeout` seconds) or a server error, with
exponential backoff; a later pull of the same file resumes too, when a small `.partial.json`
beside it says the bytes came from the same URL. The sha256 is computed on the way and checked
when known; a file that fails it is removed. Renaming into place is the caller's job."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hearth.errors import DownloadError, RemoteNotFound
from hearth.models.hub import RemoteFile
from hearth.models.paths import check_free_space, open_partial

PROGRESS_EVERY = 0.25  # seconds between progress events


@dataclass(frozen=True, slots=True)
class DownloadPolicy:
    """Retries, backoff and timeouts for one download."""

    retries: int = 5  # attempts in a row without progress before giving up
    backoff: float = 0.5  # first pause; doubles each retry
    max_backoff: float = 10.0
    stall_timeout: float = 30.0  # no byte for this long: reconnect and resume
    connect_timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: what is happening to which file, and how far it is."""

    status: str
    file: str | None = None
    completed: int | None = None
    total: int | None = None
    digest: str | None = None
    model: str | None = None


class _Retry(Exception):
    """A transient failure: reconnect and resume."""


def partial_of(target: Path) -> Path:
    """The file a download writes until it is complete and checked."""
    return target.with_name(target.name + ".partial")


def _meta_of(target: Path) -> Path:
    return target.with_name(target.name + ".partial.json")


def discard_partial(target: Path) -> None:
    """Remove a download's leftovers (a failed checksum or validation)."""
    partial_of(target).unlink(missing_ok=True)
    _meta_of(target).unlink(missing_ok=True)


def _resume_offset(remote: RemoteFile, target: Path) -> int:
    """Bytes already downloaded from this same URL, or 0 (and a clean start)."""
    partial, meta = partial_of(target), _meta_of(target)
    stamp = {"url": remote.url, "size": remote.size, "sha256": remote.sha256}
    try:
        same = json.loads(meta.read_text()) == stamp and not partial.is_symlink()
    except (OSError, ValueError):
        same = False
    if not same:
        discard_partial(target)
    with os.fdopen(open_partial(meta), "w") as out:  # O_NOFOLLOW, like the data
        json.dump(stamp, out)
    return partial.stat().st_size if same and partial.exists() else 0


def _hash_existing(path: Path, size: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    if size:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest


@dataclass(slots=True)
class _Transfer:
    """Where a download stands: bytes on disk (all of them hashed) and the expected total."""

    offset: int
    total: int | None
    digest: hashlib._Hash


async def fetch(
    client: httpx.AsyncClient, remote: RemoteFile, target: Path, policy: DownloadPolicy
) -> AsyncIterator[Progress]:
    """Download `remote` into partial_of(target), yielding progress; check its sha256."""
    offset = _resume_offset(remote, target)
    digest = await asyncio.to_thread(_hash_existing, partial_of(target), offset)
    state = _Transfer(offset, remote.size, digest)
    failures = 0
    while True:
        before = state.offset
        try:
            async for event in _attempt(client, remote, target, policy, state):
                yield event
            break
        except (_Retry, httpx.TransportError) as exc:
            failures = 0 if state.offset > before else failures + 1
            if failures > policy.retries:
                raise DownloadError(
                    f"downloading {remote.name} failed {failures} times in a row: "
                    f"{exc or type(exc).__name__}"
                ) from None
            pause = min(policy.backoff * 2 ** max(failures - 1, 0), policy.max_backoff)
            reason = str(exc) or type(exc).__name__
            yield Progress(
                f"retrying in {pause:g}s: {reason}", remote.name, state.offset, state.total
            )
            await asyncio.sleep(pause)
    if remote.sha256 is not None:
        yield Progress(
            "verifying sha256 digest", remote.name, state.offset, state.total, remote.sha256
        )
        actual = state.digest.hexdigest()
        if actual != remote.sha256:
            discard_partial(target)
            raise DownloadError(
                f"{remote.name} has sha256 {actual}, expected {remote.sha256}; "
                "the download was discarded",
                code="checksum_mismatch",
            )


async def _attempt(
    client: httpx.AsyncClient,
    remote: RemoteFile,
    target: Path,
    policy: DownloadPolicy,
    state: _Transfer,
) -> AsyncIterator[Progress]:
    """One HTTP request from state.offset, appending to the partial file as bytes come."""
    if state.total is not None and state.offset >= state.total:
        return
    headers = dict(remote.headers)
    if state.offset:
        headers["Range"] = f"bytes={state.offset}-"
    async with client.stream("GET", remote.url, headers=headers) as response:
        status = response.status_code
        if status == 404:
            raise RemoteNotFound(f"{remote.url} answered 404 Not Found", param="model")
        if status in (408, 429) or status >= 500:
            raise _Retry(f"the server answered {status}")
        if status not in (200, 206):
            raise DownloadError(f"{remote.url} answered {status}")
        if state.offset and status == 200:  # the server ignored the Range: start over
            os.truncate(partial_of(target), 0)
            state.offset, state.digest = 0, hashlib.sha256()
        length = response.headers.get("content-length")
        if state.total is None and length is not None and length.isdigit():
            state.total = state.offset + int(length)
        if state.total is not None:
            check_free_space(target.parent, state.total - state.offset)
        last = 0.0
        fd = open_partial(partial_of(target), append=True)
        with os.fdopen(fd, "ab") as out:
            async for chunk in response.aiter_bytes():  # as it arrives: a cut loses nothing
                out.write(chunk)
                state.digest.update(chunk)
                state.offset += len(chunk)
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY or state.offset == state.total:
                    last = now
                    yield Progress("downloading", remote.name, state.offset, state.total)
    if state.total is not None and state.offset < state.total:
        raise _Retry(f"the connection ended after {state.offset} of {state.total} bytes")
    if state.total is not None and state.offset > state.total:
        discard_partial(target)
        raise DownloadError(f"{remote.name}: got {state.offset} bytes, expected {state.total}")


def client_for(policy: DownloadPolicy) -> httpx.AsyncClient:
    """An HTTP client whose read timeout is the stall timeout."""
    timeout = httpx.Timeout(policy.stall_timeout, connect=policy.connect_timeout)
    return httpx.AsyncClient(follow_redirects=True, timeout=timeout)

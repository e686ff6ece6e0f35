"""Uploaded files for Ollama's create (`POST /api/blobs/sha256:<hex>`), kept under
`<models_dir>/.hearth/blobs/sha256-<hex>` until a create moves one into the models directory.

An upload streams to a `.partial` file of its own (two uploads of one blob never share one),
hashing as it goes; only a body whose sha256 is the one named becomes the blob, so a mismatch
or a cut connection leaves nothing behind."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from hearth.errors import InvalidRequestError, UnsafePath
from hearth.models.paths import check_free_space, open_partial

_DIGEST = re.compile(r"sha256[:-](?P<hex>[0-9a-f]{64})")
WRITE_CHUNK = 4 * 2**20  # bytes gathered before one write (and hash) off the event loop
CHECK_DISK_EVERY = 256 * 2**20  # an upload of unknown length checks the free space this often


def parse_digest(digest: str, *, param: str = "digest") -> str:
    """The hex of `sha256:<64 hex>` (Ollama's form; `sha256-` too), else a 400."""
    m = _DIGEST.fullmatch(digest.strip())
    if m is None:
        raise InvalidRequestError(
            f"invalid digest {digest!r}: expected sha256:<64 lower-case hex digits>", param=param
        )
    return m["hex"]


def blobs_dir(state_dir: Path) -> Path:
    """Where uploads go; refuses a symlinked folder (nothing is written through one)."""
    folder = state_dir / "blobs"
    for path in (state_dir, folder):
        if path.is_symlink():
            raise UnsafePath(f"{path} is a symlink; Hearth never writes through one")
    return folder


def blob_path(state_dir: Path, hex_digest: str) -> Path:
    """The file of an uploaded blob (it may not exist)."""
    return blobs_dir(state_dir) / f"sha256-{hex_digest}"


def _write(fd: int, digest: hashlib._Hash, data: bytes) -> None:
    digest.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def receive_blob(
    chunks: AsyncIterator[bytes], state_dir: Path, hex_digest: str, length: int | None
) -> bool:
    """Store the body as the blob if its sha256 is `hex_digest`. False if the blob was already
    there (the body is not read), True once stored; a 400 on a mismatch."""
    target = blob_path(state_dir, hex_digest)
    if target.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(target.parent, length or 0)
    partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    fd = open_partial(partial)
    digest = hashlib.sha256()
    try:
        buffered: list[bytes] = []
        size = written = checked = 0
        async for chunk in chunks:
            buffered.append(chunk)
            size += len(chunk)
            if size >= WRITE_CHUNK:
                await asyncio.to_thread(_write, fd, digest, b"".join(buffered))
                written += size
                buffered, size = [], 0
                if length is None and written - checked >= CHECK_DISK_EVERY:
                    check_free_space(target.parent, 0)
                    checked = written
        await asyncio.to_thread(_write, fd, digest, b"".join(buffered))
        os.close(fd)
        fd = -1
        actual = digest.hexdigest()
        if actual != hex_digest:
            raise InvalidRequestError(
                f"digest mismatch: the uploaded data has sha256:{actual}, not sha256:{hex_digest}",
                param="digest",
                code="digest_mismatch",
            )
        os.replace(partial, target)
    finally:
        if fd >= 0:
            os.close(fd)
        partial.unlink(missing_ok=True)
    return True


def take_blob(blob: Path, target: Path) -> None:
    """Move an uploaded blob to `target` in the models directory (a copy first when the two
    are on different filesystems); the target appears only once complete."""
    try:
        os.replace(blob, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = target.with_name(target.name + ".partial")
    try:
        with blob.open("rb") as src, os.fdopen(open_partial(partial), "wb") as out:
            shutil.copyfileobj(src, out, WRITE_CHUNK)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)

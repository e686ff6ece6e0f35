"""`hearth pull` and POST /api/pull: resolve a name, download its files, check, validate, and
only then rename them into the models directory.

Planning (parsing the name, asking the hub, checking the target names and the disk) happens
before anything is written, so its errors are plain HTTP errors; the transfer then streams
progress events. Until the final rename nothing ends in `.gguf`, so a failed or cancelled pull
leaves no model behind (only a `.partial` file that the next pull resumes)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import AlreadyExists, Conflict, InvalidModelFile
from hearth.models.download import (
    DownloadPolicy,
    Progress,
    client_for,
    discard_partial,
    fetch,
    partial_of,
)
from hearth.models.gguf_header import GGUFError
from hearth.models.hub import RemoteFile, parse_spec, resolve
from hearth.models.paths import check_free_space, new_file_target
from hearth.models.scan import FoundModel, model_id_for
from hearth.models.validate import validate_model


@dataclass(frozen=True, slots=True)
class PullPlan:
    """What a pull will download, and where it will go."""

    spec: str
    files: list[RemoteFile]
    targets: list[Path]
    model_id: str
    present: bool  # every file is already in place

    @property
    def total(self) -> int | None:
        """Bytes to download in all, when the remote says."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s or 0 for s in sizes)


async def plan_pull(
    spec: str,
    models_dir: Path,
    *,
    name: str | None = None,
    sha256: str | None = None,
    endpoint: str | None = None,
) -> PullPlan:
    """Resolve `spec` and check every target before anything is written."""
    parsed = parse_spec(spec)
    files = await asyncio.to_thread(resolve, parsed, name=name, sha256=sha256, endpoint=endpoint)
    return _plan(spec, files, models_dir)


def _plan(spec: str, files: list[RemoteFile], models_dir: Path) -> PullPlan:
    root = models_dir.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    targets = [new_file_target(root, f.name) for f in files]
    pairs = list(zip(files, targets, strict=True))
    exists = [t.exists() or t.is_symlink() for t in targets]
    # In place already: same name and the size the remote announces (unknown: not the same).
    present = all(t.is_file() and f.size == t.stat().st_size for f, t in pairs)
    if any(exists) and not present:
        taken = next(t for t, e in zip(targets, exists, strict=True) if e)
        raise AlreadyExists(
            f"{taken.name} is already in the models directory and differs; remove it first",
            param="model",
        )
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    if not present:
        have = sum(partial_of(t).stat().st_size for t in targets if partial_of(t).is_file())
        check_free_space(root, max(0, sum(f.size or 0 for f in files) - have))
    return PullPlan(spec, files, targets, model_id_for(targets[0], root), present)


async def run_pull(plan: PullPlan, policy: DownloadPolicy | None = None) -> AsyncIterator[Progress]:
    """Download, verify and validate; rename into place last. Progress events as it goes."""
    policy = policy or DownloadPolicy()
    if plan.present:
        yield Progress("already present", plan.targets[0].name, model=plan.model_id)
        yield Progress("success", model=plan.model_id)
        return
    with _exclusive(plan.targets[0]):
        async with client_for(policy) as client:
            for remote, target in zip(plan.files, plan.targets, strict=True):
                async for event in fetch(client, remote, target, policy):
                    yield event
        yield Progress("validating", plan.targets[0].name)
        partials = tuple(partial_of(t) for t in plan.targets)
        try:
            await asyncio.to_thread(
                validate_model, FoundModel(plan.model_id, partials, len(partials))
            )
        except GGUFError as exc:
            for target in plan.targets:
                discard_partial(target)
            raise InvalidModelFile(
                f"the downloaded file is not a usable GGUF: {exc.message}", param="model"
            ) from None
        # The first part last: a split model becomes visible only once complete.
        for target in reversed(plan.targets):
            os.replace(partial_of(target), target)
            discard_partial(target)
    yield Progress("success", model=plan.model_id)


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """One pull per target at a time, across processes (a CLI pull and a server pull)."""
    lock_path = target.with_name(target.name + ".lock")
    fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"{target.name} is already being downloaded", param="model") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)

"""Pulling a model for the API, without HTTP: plan first (errors are plain 4xx), then stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.api.pull.protocol import PullRequest, PullStatus
from hearth.models.download import DownloadPolicy, Progress
from hearth.models.pull import PullPlan, plan_pull, run_pull
from hearth.runtime import Runtime


async def plan(rt: Runtime, request: PullRequest) -> PullPlan:
    """Resolve the name and check the targets; raises before anything is written."""
    return await plan_pull(
        request.model,
        rt.settings.models_dir,
        name=request.filename,
        sha256=request.sha256,
        endpoint=rt.settings.hf_endpoint,
    )


def _status(event: Progress, digests: dict[str, str]) -> PullStatus:
    digest = event.digest or (digests.get(event.file) if event.file else None)
    status = event.status
    if status == "downloading":
        # Ollama names a layer by its digest's first 12 hex digits; a file the hub gives no
        # sha256 for is named by its file name.
        status = f"pulling {digest[:12] if digest else event.file}"
    return PullStatus(
        status=status,
        digest=f"sha256:{digest}" if digest else None,
        total=event.total,
        completed=event.completed,
        file=event.file,
        model=event.model,
    )


async def progress(
    rt: Runtime, pull: PullPlan, policy: DownloadPolicy | None = None
) -> AsyncIterator[PullStatus]:
    """The transfer's progress lines, with Ollama's statuses around them (`pulling manifest`
    first, `writing manifest` before `success`); the registry sees the model on success."""
    digests = {f.name: f.sha256 for f in pull.files if f.sha256}
    yield PullStatus(status="pulling manifest")
    async for event in run_pull(pull, policy):
        if event.status == "success":
            rt.registry.list()
            yield PullStatus(status="writing manifest")
        yield _status(event, digests)

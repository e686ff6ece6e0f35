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


def _status(event: Progress) -> PullStatus:
    status = f"pulling {event.file}" if event.status == "downloading" else event.status
    return PullStatus(
        status=status,
        digest=f"sha256:{event.digest}" if event.digest else None,
        total=event.total,
        completed=event.completed,
        file=event.file,
        model=event.model,
    )


async def progress(
    rt: Runtime, pull: PullPlan, policy: DownloadPolicy | None = None
) -> AsyncIterator[PullStatus]:
    """The transfer's progress lines; the registry sees the model once it succeeds."""
    async for event in run_pull(pull, policy):
        if event.status == "success":
            rt.registry.list()
        yield _status(event)

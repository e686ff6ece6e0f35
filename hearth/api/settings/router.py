"""GET and PATCH /api/settings: what the UI's settings page reads and saves."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from hearth.api.deps import runtime
from hearth.api.settings.protocol import SettingsPatch

router = APIRouter()


@router.get("/api/settings")
async def get_settings(request: Request) -> dict[str, Any]:
    """The editable settings in force, each field's label, help and when a change applies
    (`now`, `next_load` or `restart`), and the saved ones waiting for a restart. API keys
    show as names and hints, never the keys."""
    # The view reads the config file (and a key file): off the event loop.
    return await asyncio.to_thread(runtime(request).configuration.view)


@router.patch("/api/settings")
async def patch_settings(body: SettingsPatch, request: Request) -> dict[str, Any]:
    """Change some settings: validated (a 400 names the field), saved to the config file, and
    in force at once where they can be; the answer is GET's."""
    return await runtime(request).configuration.update(body.changes())

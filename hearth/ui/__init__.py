"""The web UI: static ES modules and CSS shipped in the package, served by Hearth itself at
`/` (for browsers) and `/ui/*`. Every file comes from here; the pages talk only to the
public HTTP API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).with_name("static")

# Model output is rendered by the page's own code; this policy is the second wall: no inline
# script, nothing from another origin, no plugins, no framing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def wants_page(request: Request) -> bool:
    """A browser navigating to `/` (it asks for HTML); API clients' probes do not."""
    return "text/html" in request.headers.get("accept", "")


def index() -> Response:
    return FileResponse(STATIC / "index.html", headers={**HEADERS, "cache-control": "no-cache"})


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        response.headers["cache-control"] = "no-cache"  # revalidated by ETag: upgrades show
        return response


def mount(app: FastAPI) -> None:
    app.mount("/ui", _Static(directory=STATIC), name="ui")

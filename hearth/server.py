"""Runs the app under uvicorn and says where it listens once it really does."""

from __future__ import annotations

import logging
import sys

import uvicorn

from hearth.api.app import create_app
from hearth.models.registry import Registry
from hearth.runtime import Runtime
from hearth.settings import Settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def models_banner(registry: Registry, preload: list[str]) -> list[str]:
    """The models this server answers for, one line each with its status."""
    entries = registry.list()
    if not entries:
        return [
            f"No models in {registry.models_dir}: add one with `hearth pull` or `hearth import`"
        ]
    width = max(len(e.id) for e in entries)
    lines = [f"Models in {registry.models_dir}" + (" and from --model:" if registry.extra else ":")]
    for e in entries:
        if e.error:
            status = f"invalid: {e.error}"
        elif e.id in preload:
            status = "loaded at start"
        else:
            status = "available, loads on first use"
        aliases = f"  (alias {', '.join(e.aliases)})" if e.aliases else ""
        lines.append(f"  {e.id:<{width}}  {status}{aliases}")
    return lines


class _Server(uvicorn.Server):
    """Prints the URL and the models once the socket is bound (port 0 included)."""

    def __init__(self, config: uvicorn.Config, settings: Settings, runtime: Runtime):
        super().__init__(config)
        self.settings = settings
        self.runtime = runtime

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        if self.should_exit:
            return
        port = self.settings.port
        for server in self.servers:
            for sock in server.sockets:
                port = sock.getsockname()[1]
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        lines = [f"Hearth listening on http://{shown}:{port}"]
        lines += models_banner(self.runtime.registry, self.runtime.preload)
        print("\n".join(lines), flush=True)


def run(settings: Settings) -> None:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly (engines closed, sequences freed)."""
    _configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config, settings, app.state.runtime)
    server.run()

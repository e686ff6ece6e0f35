"""Runs the app under uvicorn and says where it listens once it really does."""

from __future__ import annotations

import logging
import sys

import uvicorn

from hearth.api.app import create_app
from hearth.settings import Settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


class _Server(uvicorn.Server):
    """Prints the URL and the models once the socket is bound (port 0 included)."""

    def __init__(self, config: uvicorn.Config, settings: Settings, model_ids: list[str]):
        super().__init__(config)
        self.settings = settings
        self.model_ids = model_ids

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
        print(f"Hearth listening on http://{shown}:{port}", flush=True)
        if self.model_ids:
            print(f"Loading: {', '.join(self.model_ids)}", flush=True)
        else:
            print(f"Models load on first use, from {self.settings.models_dir}", flush=True)


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
    server = _Server(config, settings, app.state.runtime.preload)
    server.run()

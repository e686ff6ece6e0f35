"""Runs the app under uvicorn, says where it listens once it really does, and shuts down
gracefully: on SIGTERM or SIGINT new requests get 503 while running generations have
--shutdown-timeout to finish (a second signal cuts that short); the rest then end with their
final events, and the engines, MCP servers and database close before the process exits 0."""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from hearth.api.app import create_app
from hearth.api.http import limited_protocol
from hearth.api.security import bind_problem, load_api_keys
from hearth.errors import ConfigError
from hearth.models.registry import Registry
from hearth.observe.logs import configure
from hearth.runtime import Runtime
from hearth.settings import Settings

log = logging.getLogger("hearth")


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it re-raises the signal once it has shut down, and the process
        # would end "killed by SIGTERM" rather than exit 0 after a clean stop.
        if self.should_exit and self._loop is not None:  # a second signal: stop waiting
            self._loop.call_soon_threadsafe(self._stop_generations)
        self.should_exit = True

    def _stop_generations(self) -> None:
        if self._stopping is None:
            log.info("stopping the running generations")
            self._stopping = asyncio.ensure_future(self.runtime.stop_generations())

    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self.runtime.draining = True
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.shutdown_timeout, self._stop_generations)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
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
    configure(settings.log_level, settings.log_format)
    problem = bind_problem(settings, load_api_keys(settings))
    if problem is not None:
        raise ConfigError(problem)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # configure() set the handlers: uvicorn's lines carry request ids
        access_log=settings.log_level == "debug",
        loop="auto",
        http=limited_protocol(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout
        ),
        timeout_keep_alive=int(max(1, settings.timeout_keep_alive)),
        # A backstop only: at --shutdown-timeout the generations are stopped (each with its
        # final event), and their requests end at once.
        timeout_graceful_shutdown=int(settings.shutdown_timeout) + 10,
    )
    server = _Server(config, settings, app.state.runtime)
    server.run()

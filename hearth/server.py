"""Runs the app under uvicorn, says where it listens once it really does, and shuts down
gracefully: on SIGTERM or SIGINT new requests get 503 while running generations have
--shutdown-timeout to finish (a second signal cuts that short); the rest then end with their
final events, and the engines, MCP servers and database close before the process exits 0."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import Any

import httpx
import uvicorn

from hearth import __version__
from hearth.api.app import create_app
from hearth.api.http import limited_protocol
from hearth.api.security import bind_problem, load_api_keys
from hearth.errors import ConfigError, HearthError, InvalidModelFile
from hearth.models.registry import Registry
from hearth.observe.logs import configure
from hearth.runtime import Runtime
from hearth.settings import Settings

log = logging.getLogger("hearth")

SIDECAR_SHUTDOWN_S = 3.0  # a sidecar's running requests get this long: it exits within 5 s
Announce = Callable[[dict[str, Any]], None]


class PortInUse(ConfigError):
    code = "port_in_use"


class ModelLoadFailed(ConfigError):
    """A model named at start did not load (a sidecar is not ready without it)."""

    code = "model_load_failed"


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts: a taken port is a clear error (and
    --port 0 is a free port, read back for the ready line)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUse(_taken(host, port, exc)) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def _taken(host: str, port: int, exc: OSError) -> str:
    """Why the port cannot be ours, saying so when an Ollama-like server holds it."""
    shown = f"[{host}]" if ":" in host else host
    base = f"port {port} on {host} is taken ({exc.strerror})"
    try:
        # Ollama's liveness answer, which Hearth gives too (without a key, even when one is set).
        root = httpx.get(f"http://{shown}:{port}/", timeout=1.0)
        ollama_like = root.status_code == 200 and root.text.strip() == "Ollama is running"
    except httpx.HTTPError:
        ollama_like = False
    if ollama_like:
        return (
            f"{base} by a server that answers like Ollama: Ollama itself or another Hearth. "
            "Stop it, or choose another --port (0 picks a free one)"
        )
    return f"{base}: choose another --port (0 picks a free one)"


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


class HearthServer(uvicorn.Server):
    """Prints the URL and the models once the socket is bound (port 0 included)."""

    def __init__(
        self,
        config: uvicorn.Config,
        settings: Settings,
        runtime: Runtime,
        announce: Announce | None = None,
    ):
        super().__init__(config)
        self.settings = settings
        self.runtime = runtime
        self.announce = announce  # a sidecar's ready line; None: the banner for people
        self.failure: HearthError | None = None  # why it stopped before it was ready
        self.fast = False  # no grace for running requests (the parent is gone)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._ready: asyncio.Task[None] | None = None

    def request_exit(self, *, fast: bool = False) -> None:
        """Stop as on SIGTERM; from any thread (the parent and stdin watchers, the API)."""
        self.fast = self.fast or fast
        self.should_exit = True

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
        grace = 0.0 if self.fast else self.settings.shutdown_timeout
        if self.settings.sidecar:
            grace = min(grace, SIDECAR_SHUTDOWN_S)
        if self._ready is not None:
            self._ready.cancel()
        timer = loop.call_later(grace, self._stop_generations)
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
        url = f"http://{shown}:{port}"
        if self.announce is not None:
            self._ready = asyncio.create_task(self._when_ready(url, port))
            return
        lines = [f"Hearth listening on {url}"]
        lines += models_banner(self.runtime.registry, self.runtime.preload)
        print("\n".join(lines), flush=True)

    async def _when_ready(self, url: str, port: int) -> None:
        """A sidecar is ready once its start-up models have loaded; one that fails stops
        the server, and the failure becomes its error line."""
        rt = self.runtime
        assert self.announce is not None
        while rt.preload and not rt.preloaded:
            if rt.preload_errors:
                model, exc = next(iter(rt.preload_errors.items()))
                err = ModelLoadFailed(f"{model}: {exc.message}")
                if isinstance(exc, InvalidModelFile):
                    err.code = "model_invalid"
                self.failure = err
                self.request_exit(fast=True)
                return
            await asyncio.sleep(0.02)
        self.announce(
            {
                "event": "ready",
                "url": url,
                "port": port,
                "pid": os.getpid(),
                "version": __version__,
                "models": [e.id for e in rt.registry.list() if not e.error],
                "loaded": sorted(m.entry.id for m in rt.models.loaded()),
            }
        )


def build(
    settings: Settings, announce: Announce | None = None
) -> tuple[HearthServer, socket.socket]:
    """The server `hearth serve` runs and its bound socket (`HearthServer.run(sockets=...)`
    serves it): for the command, and for the desktop window's thread."""
    configure(settings.log_level, settings.log_format)
    problem = bind_problem(settings, load_api_keys(settings))
    if problem is not None:
        raise ConfigError(problem)
    app = create_app(settings)
    sock = bind_socket(settings.host, settings.port)
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
    rt: Runtime = app.state.runtime
    server = HearthServer(config, settings, rt, announce)
    if settings.sidecar:
        rt.shutdown = server.request_exit
    return server, sock


def run(settings: Settings, announce: Announce | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly (engines closed, sequences freed).
    With `announce` (a sidecar), the ready line goes there once the start-up models loaded;
    a start-up failure raises, with its code."""
    server, sock = build(settings, announce)
    watch(settings, server.request_exit)
    server.run(sockets=[sock])
    if server.failure is not None:
        raise server.failure
    if not server.started:  # the lifespan failed: uvicorn has logged why
        raise ConfigError("Hearth did not start: see the log above", code="startup_failed")


def local_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to host:port (a wildcard bind
    is reached on the loopback), without a trailing slash."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BackgroundServer:
    """uvicorn in a thread: start() returns once the socket is bound, stop() once the
    lifespan has shut down (generations drained, models unloaded)."""

    def __init__(self, settings: Settings, announce: Announce | None = None):
        # A taken port is a clear error here. With `announce`, no banner on stdout.
        self.server, self._sock = build(settings, announce)
        self._thread = threading.Thread(target=self._run, name="hearth-server")

    def _run(self) -> None:
        with suppress(SystemExit):  # uvicorn's answer to a failed start, after logging why
            self.server.run(sockets=[self._sock])

    def start(self) -> int:
        """Start serving; the bound port (port 0 picks a free one)."""
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise ConfigError("the server did not start (the log above says why)")
            time.sleep(0.05)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def handle_exit(self, sig: int) -> None:
        """As a signal to `hearth serve`: the first drains, a second stops the generations."""
        self.server.handle_exit(sig, None)

    def stop(self) -> None:
        """Shut down and wait for it."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()


def watch(settings: Settings, stop: Callable[..., None]) -> None:
    """--parent-pid and --exit-on-stdin-close: threads that stop the server when the app
    that started it is gone, or when it closes our stdin."""
    from hearth.sidecar import wait_for_exit, wait_for_stdin_end

    if settings.parent_pid is not None:
        pid = settings.parent_pid

        def parent() -> None:
            wait_for_exit(pid)
            log.warning("the parent process %d has ended: stopping", pid)
            stop(fast=True)

        threading.Thread(target=parent, name="hearth-parent-watch", daemon=True).start()
    if settings.exit_on_stdin_close:

        def stdin() -> None:
            wait_for_stdin_end()
            log.info("stdin closed: stopping")
            stop()

        threading.Thread(target=stdin, name="hearth-stdin-watch", daemon=True).start()

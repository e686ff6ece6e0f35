"""The servers under test: how to start each one on the same model with the same threads."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Peer:
    """A server started as a subprocess; `model` is the name its API expects."""

    name: str
    cmd: list[str]
    port: int
    model: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # where it runs: another checkout runs that checkout's code
    headers: dict[str, str] = field(default_factory=dict)  # an API key, where it needs one
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                r = httpx.get(f"{self.url}/v1/models", headers=self.headers, timeout=2)
                health = httpx.get(f"{self.url}/health", timeout=2).status_code
                if r.status_code == 200 and health in (200, 404):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def reset_peak_rss(self) -> None:
        """Linux: writing 5 to clear_refs resets VmHWM, so each workload gets its own peak."""
        if self.process:
            with contextlib.suppress(OSError):
                Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float | None:
        if not self.process:
            return None
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None


def hearth(
    model: Path,
    threads: int,
    parallel: int,
    ctx: int | None,
    logs: Path,
    *extra: str,
    name: str = "hearth",
) -> Peer:
    """`hearth serve` on the model; ctx None: its default context."""
    port = free_port()
    return Peer(
        name=name,
        cmd=[
            sys.executable,
            "-m",
            "hearth",
            "serve",
            "--port",
            str(port),
            "--model",
            str(model),
            "--models-dir",
            str(logs / "hearth-models"),
            "--threads",
            str(threads),
            "--threads-batch",
            str(threads),
            "--parallel",
            str(parallel),
            *(["--ctx-size", str(ctx)] if ctx is not None else []),
            "--log-level",
            "warning",
            *extra,
        ],
        port=port,
        model=model.name.removesuffix(".gguf").lower(),
        log=logs / f"{name.replace(' ', '_')}.log",
        # Its own store (a later --data-dir in `extra` wins): never the user's database.
        env={"HEARTH_CONFIG": str(logs / "none.toml"), "HEARTH_DATA_DIR": str(logs / "data")},
    )


def llama_server(
    binary: Path, model: Path, threads: int, parallel: int, ctx: int, logs: Path, *extra: str
) -> Peer:
    port = free_port()
    return Peer(
        name="llama-server",
        cmd=[
            str(binary),
            "-m",
            str(model),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "-np",
            str(parallel),
            "-c",
            str(ctx * parallel),
            "--no-webui",
            *extra,
        ],
        port=port,
        model=model.name,
        log=logs / "llama-server.log",
    )


def llama_cpp_python(model: Path, threads: int, ctx: int, logs: Path) -> Peer:
    port = free_port()
    return Peer(
        name="llama-cpp-python",
        cmd=[
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            str(ctx),
            # By default a new request interrupts the running stream; queue them instead.
            "--interrupt_requests",
            "False",
        ],
        port=port,
        model=model.name,
        log=logs / "llama-cpp-python.log",
    )


def hearth_front(upstreams: dict[str, str], logs: Path, name: str = "hearth front") -> Peer:
    """A Hearth with no model of its own, serving each NAME from the OpenAI-compatible server
    at its URL (`--upstream NAME=URL`); `model` is the first NAME. Its own empty models
    directory, data directory and (empty) config file: nothing of the user's leaks in."""
    port = free_port()
    slug = name.replace(" ", "_")
    config = logs / f"{slug}.toml"
    config.touch()
    models = logs / f"{slug}-models"
    models.mkdir(parents=True, exist_ok=True)
    return Peer(
        name=name,
        cmd=[
            sys.executable,
            "-m",
            "hearth",
            "serve",
            "--port",
            str(port),
            "--models-dir",
            str(models),
            "--data-dir",
            str(logs / f"{slug}-data"),
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
            *(a for n, url in upstreams.items() for a in ("--upstream", f"{n}={url}")),
        ],
        port=port,
        model=next(iter(upstreams)),
        log=logs / f"{slug}.log",
        env={"HEARTH_CONFIG": str(config), "HEARTH_DATA_DIR": str(logs / f"{slug}-data")},
    )

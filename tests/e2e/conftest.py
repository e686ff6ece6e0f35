"""End-to-end tier: the real `hearth serve` as a subprocess on a free port, the real starter
model, and the official clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

STARTER_ID = "smollm2-135m-instruct.q4_1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0, **kwargs)  # type: ignore[arg-type]

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="none", max_retries=0)

    def status(self) -> dict:  # type: ignore[type-arg]
        return httpx.get(f"{self.url}/status", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp: Path,
    model: Path | None,
    *args: str,
    wait_ready: bool = True,
    models_dir: Path | None = None,
    config: Path | None = None,
    data_dir: Path | None = None,
) -> RunningServer:
    """`hearth serve` on a free port; `model` (if any) loads at start. Its database lives in
    `data_dir` (default: a fresh one under `tmp`), never in the user's data directory."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    models_dir = models_dir or tmp / "models"
    models_dir.mkdir(exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "hearth",
        "serve",
        "--port",
        str(port),
        "--models-dir",
        str(models_dir),
        "--data-dir",
        str(data_dir or tmp / "data"),
        *(["--model", str(model)] if model is not None else []),
        *args,
    ]
    if config is None:
        config = tmp / "absent.toml"
        config.touch()
    env = {**os.environ, "HEARTH_CONFIG": str(config)}
    env.pop("HEARTH_API_KEY", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(proc, f"http://127.0.0.1:{port}", log)
    if wait_ready:
        wait_healthy(server)
    return server


def hearth(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, away from any user config file."""
    empty = Path(__file__).with_name("empty-config.toml")
    return subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "HEARTH_CONFIG": str(empty), **env},
        timeout=300,
    )


def wait_healthy(server: RunningServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.output}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"server not healthy after {timeout}s:\n{server.output}")


@pytest.fixture(scope="session")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path
) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(*args: str, wait_ready: bool = True) -> RunningServer:
        server = start_server(
            tmp_path_factory.mktemp("server"), starter_model, *args, wait_ready=wait_ready
        )
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """The shared server: starter model, 8 parallel sequences."""
    return server_factory("--parallel", "8")

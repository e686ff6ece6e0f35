"""The sidecar contract (docs/desktop.md), driven as Tauri drives it: `hearth serve --sidecar`
(and, in tests/desktop, the built `hearth-server` binary) spawned with `--port 0 --parent-pid`,
its one JSON line on stdout read, the API called, then stopped every way a desktop app stops
it; and its start-up errors as error lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 30.0  # a cold start with a model loading, on a busy 2-core machine


@pytest.fixture
def sidecar_cmd() -> list[str]:
    """How the sidecar is started: `hearth serve --sidecar` here; tests/desktop runs these
    same tests on the built `hearth-server` binary (`make test-desktop`)."""
    return [sys.executable, "-m", "hearth", "serve", "--sidecar"]


@dataclass
class Sidecar:
    proc: subprocess.Popen[bytes]
    line: dict[str, Any]
    stderr: Path

    @property
    def url(self) -> str:
        return str(self.line["url"])

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")[-4000:]


def read_line(out: IO[bytes], timeout: float) -> dict[str, Any]:
    """The first line on stdout, within `timeout` seconds."""
    os.set_blocking(out.fileno(), False)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"no line on stdout within {timeout}s (got {buf!r})")
        chunk = out.read()
        if chunk:
            buf += chunk
        else:
            time.sleep(0.02)
    line, _, rest = buf.partition(b"\n")
    assert not rest.strip(), f"more than one line on stdout: {buf!r}"
    event: dict[str, Any] = json.loads(line)
    return event


def spawn(
    sidecar_cmd: list[str],
    tmp: Path,
    *args: str,
    stdin: int | None = subprocess.DEVNULL,
    **env: str,
) -> subprocess.Popen[bytes]:
    models = tmp / "models"
    models.mkdir(parents=True, exist_ok=True)
    config = tmp / "none.toml"
    config.touch()
    return subprocess.Popen(
        [*sidecar_cmd, "--models-dir", str(models), "--data-dir", str(tmp / "data"), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=(tmp / "stderr.log").open("wb"),
        env={**os.environ, "HEARTH_CONFIG": str(config), **env},
    )


def start(sidecar_cmd: list[str], tmp: Path, *args: str, **kw: Any) -> Sidecar:
    proc = spawn(sidecar_cmd, tmp, "--port", "0", *args, **kw)
    assert proc.stdout is not None
    line = read_line(proc.stdout, READY_WITHIN)
    assert line["event"] == "ready", line
    return Sidecar(proc, line, tmp / "stderr.log")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` now (engine children and their spare)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parents.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def model_dir(tmp_path: Path, starter_model: Path) -> Path:
    (tmp_path / "models").mkdir()
    os.link(starter_model, tmp_path / "models" / starter_model.name)
    return tmp_path


def test_ready_then_chat_then_sigterm_mid_stream(sidecar_cmd: list[str], model_dir: Path) -> None:
    started = time.monotonic()
    car = start(sidecar_cmd, model_dir, "--model", STARTER_ID, "--parent-pid", str(os.getpid()))
    line = car.line
    assert set(line) >= {"event", "url", "port", "pid", "version", "models"}
    assert line["pid"] == car.proc.pid and line["url"] == f"http://127.0.0.1:{line['port']}"
    assert line["loaded"] == [STARTER_ID]  # with --model, ready means loaded
    print(f"ready after {time.monotonic() - started:.2f}s")
    children = descendants(car.proc.pid)
    assert children, "the engine runs in a child process"
    body = {"model": STARTER_ID, "messages": [{"role": "user", "content": "Hi"}]}
    r = httpx.post(f"{car.url}/v1/chat/completions", json={**body, "max_tokens": 8}, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    with httpx.stream(
        "POST",
        f"{car.url}/v1/chat/completions",
        json={**body, "max_tokens": 4000, "stream": True},
        timeout=60,
    ) as stream:
        lines = stream.iter_lines()
        while not next(lines).startswith("data: "):
            pass
        car.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        rest = [line for line in lines if line]  # ended for us, with its last event
    code = car.proc.wait(timeout=10)
    took = time.monotonic() - stopped
    assert code == 0, car.log()
    assert took < 5, f"exited {took:.1f}s after SIGTERM"
    assert rest and rest[-1] == "data: [DONE]", rest[-3:]
    assert gone_within(children, 1), "an engine child outlived the server"


def test_stdin_closed_stops_it(sidecar_cmd: list[str], model_dir: Path) -> None:
    car = start(sidecar_cmd, model_dir, "--exit-on-stdin-close", stdin=subprocess.PIPE)
    assert car.proc.stdin is not None
    car.proc.stdin.close()
    assert car.proc.wait(timeout=5) == 0, car.log()


def test_shutdown_over_http_needs_the_key_and_its_port_is_taken(
    sidecar_cmd: list[str], model_dir: Path
) -> None:
    car = start(sidecar_cmd, model_dir, HEARTH_API_KEY="secret-key-1")  # not on a command line
    assert "secret-key-1" not in Path(f"/proc/{car.proc.pid}/cmdline").read_text()
    # A second one on its port is told an Ollama-like server holds it.
    second = spawn(sidecar_cmd, model_dir / "second", "--port", str(car.line["port"]))
    assert second.stdout is not None
    line = read_line(second.stdout, READY_WITHIN)
    assert second.wait(timeout=10) == 1
    assert line["code"] == "port_in_use" and "answers like Ollama" in line["message"], line
    assert httpx.post(f"{car.url}/api/shutdown", timeout=10).status_code == 401
    assert car.proc.poll() is None
    r = httpx.post(
        f"{car.url}/api/shutdown", headers={"authorization": "Bearer secret-key-1"}, timeout=10
    )
    assert r.status_code == 202
    assert car.proc.wait(timeout=5) == 0, car.log()


def test_a_killed_parent_takes_it_down(sidecar_cmd: list[str], model_dir: Path) -> None:
    parent = subprocess.Popen(["sleep", "600"])
    car = start(sidecar_cmd, model_dir, "--model", STARTER_ID, "--parent-pid", str(parent.pid))
    pids = [car.proc.pid, *descendants(car.proc.pid)]
    parent.kill()
    parent.wait()
    assert gone_within(pids, 2), "the server (or a child) outlived its parent by 2 s"
    car.proc.wait(timeout=5)


def test_start_up_errors_are_error_lines(sidecar_cmd: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4000))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        cases = [
            ("port_in_use", ["--port", busy]),
            ("model_not_found", ["--model", "no-such-model"]),
            ("model_invalid", ["--model", str(broken)]),
            ("bad_flag", ["--parallel", "0"]),
            ("bad_flag", ["--no-such-flag"]),
        ]
        procs = []
        for n, (code, args) in enumerate(cases):  # all at once: each start-up takes seconds
            port = [] if "--port" in args else ["--port", str(free_port())]
            procs.append((code, spawn(sidecar_cmd, tmp_path / str(n), *port, *args)))
        for code, proc in procs:
            assert proc.stdout is not None
            line = read_line(proc.stdout, READY_WITHIN)
            assert proc.wait(timeout=10) == 1
            assert line["event"] == "error" and line["code"] == code, line
            assert line["message"] and (code != "port_in_use" or busy in line["message"])

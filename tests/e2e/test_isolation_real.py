"""Engines in child processes, on the real starter model: a killed engine costs only its own
requests, the server and other models keep serving, and no child outlives the server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server

pytestmark = pytest.mark.e2e

SECOND_ID = "second"
LONG = {
    "messages": [{"role": "user", "content": "Count from one to one hundred."}],
    "max_tokens": 400,
    "ignore_eos": True,
    "temperature": 0,
}


@pytest.fixture
def two_models(tmp_path: Path, starter_model: Path) -> Iterator[RunningServer]:
    """A server with the starter loaded and a second model (a copy under another name); one
    per test, since three crashes within a minute mark a model failed."""
    tmp = tmp_path
    models = tmp / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / f"{SECOND_ID}.gguf")
    server = start_server(tmp, starter_model, "--parallel", "2", models_dir=models)
    yield server
    server.stop()


def chat(server: RunningServer, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return httpx.post(f"{server.url}/v1/chat/completions", json={**body, **extra}, timeout=120)


def engine_pid(server: RunningServer, model: str) -> int:
    for m in server.status()["models"]:
        if m["id"] == model:
            return int(m["pid"])
    raise AssertionError(f"{model} is not loaded: {server.status()}")


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def model_state(server: RunningServer, model: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v1/models/{model}", timeout=10)
    return r.json()["hearth"]  # type: ignore[no-any-return]


def wait_for(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV])
def test_engine_killed_mid_stream(two_models: RunningServer, sig: signal.Signals) -> None:
    server = two_models
    assert chat(server, SECOND_ID).status_code == 200  # the other model is loaded too
    assert chat(server, STARTER_ID).status_code == 200
    pid = engine_pid(server, STARTER_ID)
    assert pid != server.process.pid and pid != engine_pid(server, SECOND_ID)
    events: list[str] = []
    body = {"model": STARTER_ID, "stream": True, **LONG}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 5:
                    os.kill(pid, sig)
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "engine_crashed"
    assert STARTER_ID in error["message"] and sig.name in error["message"]
    assert all("error" not in json.loads(e) for e in events[:-2])
    # The server, and the other model, never noticed.
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert chat(server, SECOND_ID).status_code == 200
    state = model_state(server, STARTER_ID)
    assert state["status"] == "crashed" and sig.name in state["error"]
    crashed = {c["id"]: c for c in server.status()["crashed"]}
    assert sig.name in crashed[STARTER_ID]["reason"]
    assert sig.name in server.output  # logged, with what the child said last
    # The next request starts a fresh engine.
    reply = chat(server, STARTER_ID)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]
    assert engine_pid(server, STARTER_ID) != pid
    assert not alive(pid)
    assert model_state(server, STARTER_ID)["status"] == "loaded"


def test_engine_killed_during_a_full_response(two_models: RunningServer) -> None:
    server = two_models
    assert chat(server, STARTER_ID).status_code == 200
    pid = engine_pid(server, STARTER_ID)
    result: dict[str, httpx.Response] = {}
    t = threading.Thread(target=lambda: result.update(r=chat(server, STARTER_ID, **LONG)))
    t.start()
    wait_for(
        lambda: any(
            s["state"] == "generating"
            for m in server.status()["models"]
            if m["id"] == STARTER_ID
            for s in m["slots"]
        )
    )
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    r = result["r"]
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "engine_crashed"
    assert STARTER_ID in err["message"] and "SIGKILL" in err["message"]
    assert chat(server, STARTER_ID).status_code == 200


def test_three_crashes_in_a_minute_mark_the_model_failed(
    tmp_path: Path, starter_model: Path
) -> None:
    server = start_server(tmp_path, starter_model)
    try:
        for _ in range(3):
            assert chat(server, STARTER_ID).status_code == 200
            pid = engine_pid(server, STARTER_ID)
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not server.status()["models"])
        r = chat(server, STARTER_ID)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "model_failed"
        assert model_state(server, STARTER_ID)["status"] == "failed"
        assert server.status()["crashed"][0]["status"] == "failed"
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        # An explicit load lifts the mark.
        r = httpx.post(f"{server.url}/api/load", json={"model": STARTER_ID}, timeout=120)
        assert r.status_code == 200, r.text
        assert chat(server, STARTER_ID).status_code == 200
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_weights_live_in_the_child_and_unload_ends_it(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / "starter.gguf")
    server = start_server(tmp_path, None, models_dir=models)
    try:
        before = rss_bytes(server.process.pid)
        assert chat(server, "starter").status_code == 200
        pid = engine_pid(server, "starter")
        assert rss_bytes(pid) > 60 * 2**20  # the weights (98 MB file) are here...
        # The server process never even loads llama.cpp's libraries.
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
        assert "libllama" not in maps and "libggml" not in maps
        r = httpx.post(f"{server.url}/api/unload", json={"model": "starter"}, timeout=30)
        assert r.status_code == 200, r.text
        wait_for(lambda: not alive(pid))
        # ...and never in the server: the tokenizer is all it held, and it is gone too.
        assert rss_bytes(server.process.pid) - before < 40 * 2**20
    finally:
        server.stop()


def test_no_child_outlives_a_killed_server(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / f"{SECOND_ID}.gguf")
    server = start_server(tmp_path, starter_model, models_dir=models)
    assert chat(server, SECOND_ID).status_code == 200
    pids = [engine_pid(server, STARTER_ID), engine_pid(server, SECOND_ID)]
    assert all(alive(p) for p in pids)
    server.process.kill()
    server.process.wait()
    time.sleep(2)
    assert not any(alive(p) for p in pids)


def test_terminated_server_stops_its_children(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(tmp_path, starter_model)
    pid = engine_pid(server, STARTER_ID)
    server.stop()  # SIGTERM: a graceful stop (uvicorn then exits by the same signal)
    assert "models unloaded" in server.output
    assert not alive(pid)


def test_forced_unload_mid_stream_ends_with_an_error(two_models: RunningServer) -> None:
    server = two_models
    pid = engine_pid(server, STARTER_ID)
    events: list[str] = []
    body = {"model": STARTER_ID, "stream": True, **LONG}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                if len(events) == 5:
                    r2 = httpx.post(
                        f"{server.url}/api/unload",
                        json={"model": STARTER_ID, "force": True},
                        timeout=30,
                    )
                    assert r2.status_code == 200, r2.text
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "model_unloaded"
    wait_for(lambda: not alive(pid))
    assert chat(server, STARTER_ID).status_code == 200


def test_busy_engines_share_the_cores(tmp_path: Path, starter_model: Path) -> None:
    """Two children computing at once each decode with half the threads (their OpenMP teams
    would otherwise spin against each other); one alone gets them all back."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / f"{SECOND_ID}.gguf")
    server = start_server(tmp_path, starter_model, "--threads", "2", models_dir=models)
    try:
        assert chat(server, SECOND_ID).status_code == 200

        def threads() -> dict[str, int]:
            return {m["id"]: m["threads"] for m in server.status()["models"]}

        assert threads() == {STARTER_ID: 2, SECOND_ID: 2}
        results: list[httpx.Response] = []
        workers = [
            threading.Thread(target=lambda m=m: results.append(chat(server, m, **LONG)))
            for m in (STARTER_ID, SECOND_ID)
        ]
        for w in workers:
            w.start()
        wait_for(lambda: threads() == {STARTER_ID: 1, SECOND_ID: 1}, timeout=30)
        for w in workers:
            w.join(120)
        assert [r.status_code for r in results] == [200, 200]
        alone = threading.Thread(target=lambda: results.append(chat(server, STARTER_ID, **LONG)))
        alone.start()
        wait_for(lambda: threads()[STARTER_ID] == 2, timeout=30)
        alone.join(120)
        assert results[-1].status_code == 200
    finally:
        server.stop()

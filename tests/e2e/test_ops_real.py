"""Operations on the real server and the starter model: graceful shutdown on SIGTERM (running
streams end with their final events, responses are stored as cancelled, the database is
intact, exit 0), a second signal cutting the wait short, slow and oversized headers, the
refusal to listen beyond loopback without a key, JSON logs with request ids, the database
locked by another process, and model files that change under a loaded model."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, free_port, hearth, start_server

pytestmark = pytest.mark.e2e

EOS_BAN = {"logit_bias": {"2": -100, "0": -100}}  # the starter's end tokens: long answers


def long_chat() -> dict[str, Any]:
    return {
        "model": STARTER_ID,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 3000,
        "stream": True,
        **EOS_BAN,
    }


class Reader(threading.Thread):
    """Reads a stream to its end in the background, keeping its lines."""

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(daemon=True)
        self.url, self.body, self.headers = url, body, headers or {}
        self.lines: list[str] = []
        self.started_streaming = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST", self.url, json=self.body, headers=self.headers, timeout=120
            ) as r:
                for line in r.iter_lines():
                    if line:
                        self.lines.append(line)
                        self.started_streaming.set()
        except BaseException as exc:  # the test reads it
            self.error = exc
            self.started_streaming.set()


def test_sigterm_mid_stream_ends_cleanly(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(tmp_path, starter_model, "--shutdown-timeout", "2")
    chat = Reader(f"{server.url}/v1/chat/completions", long_chat())
    response = Reader(
        f"{server.url}/v1/responses",
        {
            "model": STARTER_ID,
            "input": "Tell me a very long story.",
            "max_output_tokens": 3000,
            "stream": True,
            "store": True,
            **EOS_BAN,
        },
    )
    for reader in (chat, response):
        reader.start()
        assert reader.started_streaming.wait(60)
    deadline = time.monotonic() + 60
    while len(chat.lines) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    at_signal = len(chat.lines)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # Draining: nothing new is taken (refused connection, or a 503 on a kept-alive one).
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{server.url}/v1/models", timeout=5)
    assert server.process.wait(30) == 0, server.output
    assert time.monotonic() - started < 2 + 10
    for reader in (chat, response):
        reader.join(10)
        assert reader.error is None, reader.error
    # The chat stream ran until the timeout, then got its error event and [DONE].
    assert chat.lines[-1] == "data: [DONE]"
    assert json.loads(chat.lines[-2][6:])["error"]["code"] == "model_unloaded"
    assert len(chat.lines) > at_signal + 2  # it went on generating while the server drained
    # The response's last event says it ended; the store has it as cancelled.
    last = json.loads(response.lines[-1].removeprefix("data: "))
    assert last["type"] in ("response.failed", "response.cancelled", "response.incomplete")
    response_id = last["response"]["id"]
    db = sqlite3.connect(tmp_path / "data" / "hearth.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (status,) = db.execute("SELECT status FROM responses WHERE id = ?", (response_id,)).fetchone()
    assert status == "cancelled"
    logged = db.execute("SELECT count(*) FROM requests WHERE route = '/v1/responses'").fetchone()
    assert logged[0] == 1  # the request log was written before the store closed
    db.close()
    assert "engine child" not in server.output or "did not stop" not in server.output


def test_a_second_signal_cuts_the_wait_short(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(tmp_path, starter_model, "--shutdown-timeout", "120")
    chat = Reader(f"{server.url}/v1/chat/completions", long_chat())
    chat.start()
    assert chat.started_streaming.wait(60)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert server.process.poll() is None  # still letting the stream finish
    started = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(30) == 0, server.output
    assert time.monotonic() - started < 10
    chat.join(10)
    assert chat.lines[-1] == "data: [DONE]"


def raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_slow_and_oversized_headers(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(
        tmp_path,
        None,
        "--header-timeout",
        "1",
        "--max-headers",
        "20",
        "--max-header-bytes",
        "4096",
    )
    try:
        port = int(server.url.rsplit(":", 1)[1])
        many = b"".join(b"x-h%d: v\r\n" % i for i in range(30))
        reply = raw(port, b"GET /health HTTP/1.1\r\nhost: localhost\r\n" + many + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 431 ")
        big = b"x-big: " + b"a" * 8000 + b"\r\n"
        reply = raw(port, b"GET /health HTTP/1.1\r\nhost: localhost\r\n" + big + b"\r\n")
        assert reply.startswith(b"HTTP/1.1 431 ")
        # A client that trickles its headers is cut off at the header timeout.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nhost: localhost\r\n")
            started = time.monotonic()
            assert s.recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 5
        # So is one that connects and says nothing.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            started = time.monotonic()
            assert s.recv(100) == b""
            assert time.monotonic() - started < 5
        # A normal client, keep-alive included, is untouched.
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for _ in range(3):
                assert c.get("/health").status_code == 200
    finally:
        server.stop()


def test_refuses_to_listen_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    args = ["serve", "--host", "0.0.0.0", "--port", str(free_port())]
    done = hearth(*args, "--models-dir", str(tmp_path))
    assert done.returncode == 1
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_json_logs_carry_the_request_id(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(tmp_path, starter_model, "--log-format", "json", "--log-level", "debug")
    try:
        r = httpx.get(f"{server.url}/v1/models", headers={"x-request-id": "req-json-1"})
        assert r.status_code == 200
        time.sleep(0.5)
    finally:
        server.stop()
    records = []
    for line in server.output.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if "/v1/models" in r["message"]]
    assert access and access[0]["request_id"] == "req-json-1"


def test_a_locked_database_does_not_stop_requests(tmp_path: Path, starter_model: Path) -> None:
    server = start_server(tmp_path, starter_model)
    try:
        client = server.client()

        def three() -> float:
            started = time.monotonic()
            for _ in range(3):
                r = client.chat.completions.create(
                    model=STARTER_ID, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
                )
                assert r.choices[0].message.content is not None
            return time.monotonic() - started

        unlocked = three()
        other = sqlite3.connect(tmp_path / "data" / "hearth.db", timeout=10)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        assert three() < unlocked * 1.5 + 1.5  # nobody waits for the lock
        time.sleep(3)
        other.rollback()
        other.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rows = httpx.get(f"{server.url}/api/requests", timeout=30).json()["data"]
            if len(rows) >= 6:
                break
            time.sleep(0.5)
        assert len([r for r in rows if r["route"] == "/v1/chat/completions"]) == 6
    finally:
        server.stop()


def test_model_files_that_change_under_a_loaded_model(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    copy = models / "copy.gguf"
    shutil.copy(starter_model, copy)
    server: RunningServer = start_server(tmp_path, None, models_dir=models)
    try:
        ask = {"model": "copy", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        chat = f"{server.url}/v1/chat/completions"
        assert httpx.post(chat, json=ask, timeout=120).status_code == 200
        # Truncated while loaded: the engine's mapping loses its pages (a SIGBUS in the
        # child at worst); the server answers, and the next load refuses the file.
        with copy.open("r+b") as f:
            f.truncate(4096)
        for _ in range(3):
            r = httpx.post(chat, json=ask, timeout=120)
            assert r.status_code in (200, 422, 500), r.text
            if r.status_code != 200:
                assert r.json()["error"]["code"] in ("engine_crashed", "invalid_model_file")
        httpx.post(f"{server.url}/api/unload", json={"model": "copy", "force": True}, timeout=60)
        r = httpx.post(chat, json=ask, timeout=120)
        assert r.status_code in (404, 422), r.text
        # Deleted: it is gone from the list, and a request for it is a 404.
        copy.unlink()
        r = httpx.post(chat, json=ask, timeout=60)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        # The directory itself gone: listings are empty, nothing fails.
        shutil.rmtree(models)
        assert httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"] == []
        assert httpx.get(f"{server.url}/api/tags", timeout=30).status_code == 200
        models.write_text("not a directory")
        assert httpx.get(f"{server.url}/v1/models", timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert server.process.poll() is None
    finally:
        server.stop()


def test_a_client_leaving_mid_stream_is_logged_not_an_error(server: RunningServer) -> None:
    body = {**long_chat(), "max_tokens": 200}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        request_id = r.headers["x-request-id"]
        for n, _ in enumerate(r.iter_lines()):
            if n == 3:
                break  # leaves: the connection closes with the block
    deadline = time.monotonic() + 30
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rows = httpx.get(f"{server.url}/api/requests", timeout=30).json()["data"]
        row = next((r for r in rows if r["request_id"] == request_id), {})
        if row:
            break
        time.sleep(0.2)
    assert row["status"] == 200 and row["error_code"] == "client_disconnected"
    assert "Traceback" not in server.output and "Exception in ASGI" not in server.output


def test_keys_metrics_queue_timeout_and_rate_limit_through_the_clients(
    tmp_path: Path, starter_model: Path
) -> None:
    import anthropic
    import openai

    flags = ["--api-key", "k-1", "--parallel", "1", "--max-queue", "1"]
    flags += ["--request-timeout", "4", "--rate-limit", "40/min"]
    server = start_server(tmp_path, starter_model, *flags)  # /health needs no key
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client().models.list()
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k-1", max_retries=0)
        hi = [{"role": "user", "content": "Hi"}]
        r = c.chat.completions.create(model=STARTER_ID, messages=hi, max_tokens=4)  # type: ignore[arg-type]
        assert r.choices[0].message.content
        a = anthropic.Anthropic(base_url=server.url, api_key="k-1", max_retries=0)
        m = a.messages.create(model=STARTER_ID, max_tokens=4, messages=hi)  # type: ignore[arg-type]
        assert m.content
        auth = {"authorization": "Bearer k-1"}
        text = httpx.get(f"{server.url}/metrics", headers=auth, timeout=30).text
        assert f'hearth_generated_tokens_total{{model="{STARTER_ID}"}}' in text
        # One sequence, one waiting place: a third request is refused while two run; the
        # two end at the request timeout with their error event.
        url = f"{server.url}/v1/chat/completions"
        streams = [Reader(url, long_chat(), auth) for _ in range(2)]
        for s in streams:
            s.start()
        time.sleep(1.0)
        with pytest.raises(openai.APIStatusError) as full:
            c.chat.completions.create(model=STARTER_ID, messages=hi, max_tokens=4)  # type: ignore[arg-type]
        assert full.value.status_code == 503 and full.value.response.headers["retry-after"]
        for s in streams:
            s.join(30)
        ended = [json.loads(s.lines[-2][6:]) for s in streams if len(s.lines) >= 2]
        assert [e["error"]["code"] for e in ended] == ["request_timeout"] * 2
        with pytest.raises(openai.APIStatusError) as late:
            c.chat.completions.create(
                model=STARTER_ID,
                messages=hi,  # type: ignore[arg-type]
                max_tokens=3000,
                extra_body=EOS_BAN,
            )
        assert late.value.status_code == 504
        # Last, as it locks the key out for the rest of the minute.
        with pytest.raises(openai.RateLimitError) as limited:
            for _ in range(45):
                c.models.list()
        assert int(limited.value.response.headers["retry-after"]) >= 1
    finally:
        server.stop()

"""`hearth run` on the real starter model: the interactive chat through a pseudo-terminal
(pexpect), as a person types it; a one-off answer into a pipe; piped stdin; the in-process
fallback when no server answers; errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, free_port

pytestmark = pytest.mark.e2e
EMPTY = Path(__file__).with_name("empty-config.toml")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def port_of(server: RunningServer) -> str:
    return server.url.rsplit(":", 1)[1]


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "run", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "HEARTH_CONFIG": str(EMPTY), **env},
        timeout=120,
    )


def terminal(server: RunningServer, max_tokens: int) -> pexpect.spawn:
    """`hearth run` in a pseudo-terminal, as a person starts it."""
    return pexpect.spawn(
        sys.executable,
        [
            "-m",
            "hearth",
            "run",
            STARTER_ID,
            "--port",
            port_of(server),
            "--max-tokens",
            str(max_tokens),
        ],
        env={**os.environ, "HEARTH_CONFIG": str(EMPTY), "TERM": "xterm"},
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
    )


def test_an_interactive_chat_through_a_terminal(server: RunningServer) -> None:
    chat = terminal(server, 24)
    chat.expect_exact(">>> ")
    chat.sendline("What is the capital of France?")
    chat.expect_exact(">>> ")
    first = ANSI.sub("", chat.before or "").split("\n", 1)[-1].strip()
    assert len(first) > 10, chat.before  # an answer streamed between the two prompts
    chat.sendline("/?")
    chat.expect_exact("/set system")
    chat.expect_exact(">>> ")
    chat.sendline("/set system You are a pirate.")
    chat.expect_exact("Set system message.")
    chat.expect_exact(">>> ")
    chat.sendline('"""Line one')
    chat.expect_exact("... ")
    chat.sendline('line two"""')
    chat.expect_exact(">>> ")
    assert ANSI.sub("", chat.before or "").strip()
    chat.sendline("/clear")
    chat.expect_exact("Cleared session context")
    chat.expect_exact(">>> ")
    chat.sendline("/nope")
    chat.expect_exact("Unknown command '/nope'")
    chat.expect_exact(">>> ")
    chat.sendline("/bye")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_ctrl_c_stops_the_answer_on_the_server(server: RunningServer) -> None:
    chat = terminal(server, 3000)
    chat.expect_exact(">>> ")
    chat.sendline("Write a very long story about a dragon.")
    chat.expect(r"\w+ \w+ \w+")  # it is answering
    chat.sendintr()
    chat.expect_exact(">>> ")  # back at the prompt, the session goes on
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        slots = server.status()["models"][0]["slots"]
        if all(s["state"] == "idle" for s in slots):
            break
        time.sleep(0.1)
    assert all(s["state"] == "idle" for s in slots), slots
    chat.sendcontrol("d")  # Ctrl+D leaves too
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_one_answer_into_a_pipe_and_piped_stdin(server: RunningServer) -> None:
    once = run(STARTER_ID, "Say", "hello.", "--port", port_of(server), "--max-tokens", "16")
    assert once.returncode == 0, once.stderr
    assert once.stdout.strip() and "\x1b[" not in once.stdout  # plain text into a pipe
    piped = run(
        STARTER_ID,
        "Summarize:",
        "--port",
        port_of(server),
        "--max-tokens",
        "16",
        stdin="The sky is blue because air scatters blue light more than red light.",
    )
    assert piped.returncode == 0 and piped.stdout.strip(), piped.stderr
    rows = httpx.get(f"{server.url}/api/requests", params={"route": "/v1/chat/completions"})
    assert any(r["status"] == 200 for r in rows.json()["data"])


def test_errors_exit_1_with_the_servers_message(server: RunningServer) -> None:
    missing = run("no-such-model", "hi", "--port", port_of(server))
    assert missing.returncode == 1
    assert "The model 'no-such-model' does not exist" in missing.stderr


def test_without_a_server_it_runs_here(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / starter_model.name).symlink_to(starter_model)
    here = run(
        STARTER_ID,
        "Say hello.",
        "--port",
        str(free_port()),  # nothing listens there
        "--models-dir",
        str(models),
        "--max-tokens",
        "12",
        HEARTH_DATA_DIR=str(tmp_path / "data"),
    )
    assert here.returncode == 0, here.stderr
    assert here.stdout.strip()

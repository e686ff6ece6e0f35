"""The real coding agents (OpenCode, Codex CLI, Claude Code; pinned in tests/agents/package.json,
installed by scripts/test-deps.sh into a cache) against the real server and the starter model,
set up by `hearth launch` the way a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import platformdirs
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, free_port

PACKAGES = Path(__file__).parents[1] / "agents" / "package.json"
PROMPT = "Say hello in one short sentence."


@pytest.fixture(scope="module")
def agents_bin() -> Path:
    """Where scripts/test-deps.sh installed the agents (keyed by the pinned versions)."""
    key = hashlib.sha256(PACKAGES.read_bytes()).hexdigest()[:12]
    where = Path(platformdirs.user_cache_dir("hearth")) / "agents" / key / "node_modules" / ".bin"
    missing = [a for a in ("opencode", "codex", "claude") if not (where / a).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in {where}: run scripts/test-deps.sh (needs npm)")
    return where


@pytest.fixture(scope="module")
def agent_server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """Its own server (the agents' long prompts would slow the shared one): the starter at
    its default context, which is the one it was trained for."""
    return server_factory("--request-log-bodies")


def launch(
    server: RunningServer | int,
    agents_bin: Path,
    home: Path,
    *args: str,
    timeout: float = 420,
    config: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`hearth launch ...` pointed at the server (or a port), its files under `home`, the
    agents on PATH; `config` for a Hearth it starts itself."""
    port = server.url.rsplit(":", 1)[1] if isinstance(server, RunningServer) else str(server)
    env = {
        **os.environ,
        "PATH": f"{agents_bin}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),  # the agents' own state and any user config stay in the test
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HEARTH_CONFIG": str(config or Path(__file__).with_name("empty-config.toml")),
    }
    env.pop("HEARTH_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "hearth", "launch", *args[:1], "--port", port,
         "--data-dir", str(home / "data"), *args[1:]],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=home,
    )  # fmt: skip


def requests_since(server: RunningServer, seq: int) -> list[dict[str, object]]:
    rows = httpx.get(f"{server.url}/api/requests", params={"limit": 200}, timeout=10).json()
    return [r for r in rows["data"] if int(r["seq"]) > seq]


def last_seq(server: RunningServer) -> int:
    rows = httpx.get(f"{server.url}/api/requests", params={"limit": 1}, timeout=10).json()
    return int(rows["data"][0]["seq"]) if rows["data"] else 0


def test_print_shows_each_agents_configuration(
    agent_server: RunningServer, agents_bin: Path, tmp_path: Path
) -> None:
    models = httpx.get(f"{agent_server.url}/v1/models", timeout=10).json()["data"]
    starter = next(m for m in models if m["id"] == STARTER_ID)
    # The context agents are told is the one the model really gets: its trained 8192.
    assert starter["context_window"] == starter["max_model_len"] == 8192

    opencode = launch(agent_server, agents_bin, tmp_path, "opencode", "--print")
    assert opencode.returncode == 0, opencode.stderr
    head, body = opencode.stdout.split("\n", 1)
    assert head == f"# {tmp_path / 'data' / 'agents' / 'opencode' / 'opencode.json'}"
    config = json.loads(body.split("\n# environment")[0])
    provider = config["provider"]["hearth"]
    assert provider["options"]["baseURL"] == f"{agent_server.url}/v1"
    assert provider["models"][STARTER_ID]["limit"] == {"context": 8192, "output": 256}
    assert config["model"] == f"hearth/{STARTER_ID}"
    assert "export OPENCODE_CONFIG=" in opencode.stdout

    codex = launch(agent_server, agents_bin, tmp_path, "codex", "--print")
    assert codex.returncode == 0, codex.stderr
    toml = tomllib.loads(codex.stdout.split("\n", 1)[1].split("\n# environment")[0])
    assert toml["model_providers"]["hearth"]["wire_api"] == "responses"
    assert toml["model_providers"]["hearth"]["base_url"] == f"{agent_server.url}/v1"
    assert toml["model_context_window"] == 8192 and toml["model"] == STARTER_ID

    claude = launch(agent_server, agents_bin, tmp_path, "claude", "--print")
    assert claude.returncode == 0, claude.stderr
    env = json.loads(claude.stdout.split("\n", 1)[1].split("\n# environment")[0])["env"]
    assert env["ANTHROPIC_BASE_URL"] == agent_server.url
    assert env["ANTHROPIC_MODEL"] == STARTER_ID and env["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "8192"
    assert "export ANTHROPIC_AUTH_TOKEN=hearth" in claude.stdout
    assert "# arguments\n--settings " in claude.stdout
    # --print writes nothing, runs nothing.
    assert not (tmp_path / "data" / "agents").exists()


def test_an_agent_that_is_not_installed_is_named_with_how_to_install_it(
    agent_server: RunningServer, tmp_path: Path
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = launch(agent_server, empty, tmp_path, "codex", "--", "exec", "hi")
    assert run.returncode == 1
    assert "codex is not installed" in run.stderr and "npm install -g @openai/codex" in run.stderr
    unknown = launch(agent_server, empty, tmp_path, "cursor")
    assert unknown.returncode == 1 and "choose from opencode, codex, claude" in unknown.stderr


def test_opencode_run_completes_through_hearth_launch(
    agent_server: RunningServer, agents_bin: Path, tmp_path: Path
) -> None:
    """OpenCode's first request carries a 7.8k-token prompt: it fits the default context."""
    seq = last_seq(agent_server)
    run = launch(
        agent_server, agents_bin, tmp_path, "opencode", "--", "run", "--format", "json", PROMPT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in events if e.get("type") == "error"], run.stdout[-3000:]
    texts = [e["part"]["text"] for e in events if e.get("type") == "text"]
    assert texts and texts[-1].strip()
    served = [r for r in requests_since(agent_server, seq) if r["path"] == "/v1/chat/completions"]
    assert served and all(r["status"] == 200 for r in served), served
    assert max(int(r["prompt_tokens"] or 0) for r in served) > 7000
    # The configuration it ran with is where launch keeps it, not in the user's files.
    assert (tmp_path / "data" / "agents" / "opencode" / "opencode.json").exists()
    assert not (tmp_path / ".config" / "opencode" / "opencode.json").exists()


def test_codex_exec_completes_on_the_responses_api(
    agent_server: RunningServer, agents_bin: Path, tmp_path: Path
) -> None:
    seq = last_seq(agent_server)
    run = launch(
        agent_server, agents_bin, tmp_path, "codex", "--",
        "exec", "--json", "--skip-git-repo-check", PROMPT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events]
    assert "error" not in kinds and "turn.failed" not in kinds, run.stdout[-3000:]
    assert kinds[-1] == "turn.completed"
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    messages = [i["text"] for i in items if i["type"] == "agent_message"]
    assert messages and messages[-1].strip()
    # Codex's own notices come as "error" items; none may be about the configuration written
    # for it (the one left names models outside Codex's own catalog, any local one).
    notices = [i["message"] for i in items if i["type"] == "error"]
    assert not [n for n in notices if "configuration" in n], notices
    served = [r for r in requests_since(agent_server, seq) if r["path"] == "/v1/responses"]
    assert served and all(r["status"] == 200 for r in served), served


def test_claude_code_completes_on_a_hearth_launch_starts_itself(
    agents_bin: Path, tmp_path: Path, starter_model: Path
) -> None:
    """No server at the address: launch serves in its own process on a free port for the
    agent's lifetime. Claude Code runs with its tools off, so that its prompt (1.8k tokens)
    fits the starter's 8k; it sends its environment as a mid-conversation system message
    and asks for adaptive thinking, both taken."""
    nobody = free_port()
    # Claude Code sends no temperature: the starter's default (0.8) sometimes rambles past
    # the answer cap, so the model's own sampling default here is greedy.
    config = tmp_path / "config.toml"
    config.write_text(
        f'[[models]]\nid = "{STARTER_ID}"\npath = "{starter_model}"\n'
        "sampling = { temperature = 0 }\n"
    )
    run = launch(
        nobody, agents_bin, tmp_path, "claude", "--model", STARTER_ID,
        "--models-dir", str(starter_model.parent), "--",
        "-p", PROMPT, "--tools", "", "--output-format", "json",
        config=config,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["is_error"] is False and result["result"].strip(), result
    found = re.search(r"claude on \S+ at (http://127\.0\.0\.1:(\d+)) \(context 8192\)", run.stderr)
    assert found, run.stderr
    assert int(found[2]) != nobody  # a free port of its own
    # The server went with the agent.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{found[1]}/health", timeout=2)


def test_write_user_config_backs_up_and_keeps_the_users_settings(
    agent_server: RunningServer, agents_bin: Path, tmp_path: Path
) -> None:
    """The user's own file gets Hearth's provider beside what it had, after a backup; the
    agent then runs on it (here `opencode models`, which lists the providers' models)."""
    mine = tmp_path / ".config" / "opencode" / "opencode.json"
    mine.parent.mkdir(parents=True)
    mine.write_text(json.dumps({"theme": "dark"}))
    run = launch(
        agent_server, agents_bin, tmp_path, "opencode", "--write-user-config", "--", "models",
        "hearth",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"hearth/{STARTER_ID}" in run.stdout
    written = json.loads(mine.read_text())
    assert written["theme"] == "dark" and "hearth" in written["provider"]
    backups = list(mine.parent.glob("opencode.json.bak-*"))
    assert len(backups) == 1 and json.loads(backups[0].read_text()) == {"theme": "dark"}

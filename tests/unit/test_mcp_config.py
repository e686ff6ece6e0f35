"""mcp.json: both transports, defaults, ${VAR}, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import ConfigError
from hearth.mcp.config import ServerConfig, load_mcp_config
from hearth.runtime import mcp_servers
from hearth.settings import load_settings


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_stdio_and_http_servers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "files": {
                    "command": "npx",
                    "args": ["-y", "files", "/tmp"],
                    "env": {"TOKEN": "${FILES_TOKEN}", "PLAIN": "x"},
                    "cwd": "servers",
                    "allowed_tools": ["read"],
                    "timeout_s": 5,
                    "auto_inject": True,
                },
                "search": {
                    "type": "streamable-http",
                    "url": "https://search.example/mcp",
                    "headers": {"Authorization": "Bearer ${SEARCH}-${SEARCH}"},
                    "enabled": False,
                },
            }
        },
    )
    servers = load_mcp_config(path, {"FILES_TOKEN": "t0k", "SEARCH": "s"})
    assert servers["files"] == ServerConfig(
        name="files",
        command="npx",
        args=("-y", "files", "/tmp"),
        env={"TOKEN": "t0k", "PLAIN": "x"},
        cwd=(tmp_path / "servers").resolve(),
        allowed_tools=("read",),
        timeout_s=5.0,
        auto_inject=True,
    )
    assert servers["files"].transport == "stdio"
    search = servers["search"]
    assert (search.transport, search.url, search.enabled) == (
        "http",
        "https://search.example/mcp",
        False,
    )
    assert search.headers == {"Authorization": "Bearer s-s"}
    assert (search.timeout_s, search.auto_inject, search.allowed_tools) == (60.0, False, None)


def test_no_servers_key_means_none(tmp_path: Path) -> None:
    assert load_mcp_config(write(tmp_path, {}), {}) == {}


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "mcpServers": {\n    "a": {"command": "x",}\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"mcp\.json line 3, column \d+: not valid JSON"):
        load_mcp_config(path, {})


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"command": "x", "comand": "y"}, "comand: Extra inputs are not permitted"),
        ({"args": ["a"]}, "give either `command` .* or `url`"),
        ({"command": "x", "url": "http://h/mcp"}, "give either"),
        ({"url": "ftp://h/mcp"}, "`url` must be http"),
        ({"url": "http://h/mcp", "args": ["a"]}, "`args`, `env` and `cwd` are for stdio servers"),
        ({"command": "x", "headers": {"a": "b"}}, "`headers` are for HTTP servers"),
        ({"command": "x", "timeout_s": 0}, "timeout_s: Input should be greater than 0"),
        ({"command": "x", "enabled": "yes"}, "enabled: Input should be a valid boolean"),
        ({"type": "sse", "url": "http://h/sse"}, "type: Input should be"),
        ({"command": "x", "env": {"A": "${NOPE}"}}, r"env\.A: \$\{NOPE\} is not set"),
        ({"url": "http://h/mcp", "headers": {"X": "${NOPE}"}}, r"headers\.X: \$\{NOPE\}"),
    ],
)
def test_bad_entries_name_the_server_and_line(
    tmp_path: Path, entry: dict[str, object], problem: str
) -> None:
    path = write(tmp_path, {"mcpServers": {"ok": {"command": "x"}, "broken": entry}})
    with pytest.raises(ConfigError, match=rf"mcp\.json line \d+: server 'broken': {problem}"):
        load_mcp_config(path, {})


def test_the_line_is_the_servers_own(tmp_path: Path) -> None:
    text = '{"mcpServers": {\n  "ok": {"command": "x"},\n  "broken": {"command": 3}\n}}\n'
    with pytest.raises(ConfigError, match="line 3: server 'broken': command"):
        load_mcp_config(write(tmp_path, text), {})


def test_bad_shape_and_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected"):
        load_mcp_config(write(tmp_path, {"mcpServers": []}), {})
    with pytest.raises(ConfigError, match="a name is letters"):
        load_mcp_config(write(tmp_path, {"mcpServers": {"two words": {"command": "x"}}}), {})


def test_missing_files(tmp_path: Path) -> None:
    # The default file may be absent; a file named explicitly must exist.
    (tmp_path / "none.toml").touch()
    settings = load_settings({"config": tmp_path / "none.toml"}, environ={})
    if not settings.mcp_config.exists():
        assert mcp_servers(settings, {}) == {}
    flags = {"config": tmp_path / "none.toml", "mcp_config": tmp_path / "absent.json"}
    named = load_settings(flags, environ={})
    with pytest.raises(ConfigError, match="cannot read MCP config"):
        mcp_servers(named, {})


def test_settings_from_flags_and_environment(tmp_path: Path) -> None:
    env = {
        "HEARTH_MCP_ALLOW_URLS": "https://a.example, http://b.example:8080",
        "HEARTH_MCP_EAGER": "true",
        "HEARTH_MCP_CONFIG": str(tmp_path / "m.json"),
    }
    (tmp_path / "none.toml").touch()
    s = load_settings({"config": tmp_path / "none.toml"}, environ=env)
    assert s.mcp_allow_urls == ["https://a.example", "http://b.example:8080"]
    assert s.mcp_eager is True
    assert s.mcp_config == tmp_path / "m.json"

"""mcp.json: the MCP servers Hearth may run, in the shape desktop MCP clients read.

    {"mcpServers": {"files": {"command": "npx", "args": ["-y", "@mcp/files", "/tmp"]},
                    "search": {"url": "https://example.com/mcp",
                               "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}}}}

Read once at start-up; every problem is a ConfigError naming the file (and the line, where
there is one), never a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from hearth.errors import ConfigError

# Names travel in URLs (/v1/mcp/servers/{name}/restart) and as a tool's `server_label`.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server: a command run over stdio, or a streamable-HTTP URL."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    cwd: Path | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    enabled: bool = True
    allowed_tools: tuple[str, ...] | None = None
    timeout_s: float = 60.0
    auto_inject: bool = False

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How Hearth talks to it."""
        return "http" if self.url is not None else "stdio"


class _Entry(BaseModel):
    """One server as written in the file; unknown keys are an error, so a typo is seen."""

    model_config = ConfigDict(extra="forbid")

    # Cursor and VS Code write the transport out; Claude Desktop leaves it implied.
    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] | None = None
    enabled: StrictBool = True
    allowed_tools: list[str] | None = None
    timeout_s: float = Field(60.0, gt=0)
    auto_inject: StrictBool = False


def load_mcp_config(path: Path, environ: Mapping[str, str]) -> dict[str, ServerConfig]:
    """The servers in an mcp.json file, `${VAR}` in env and headers expanded from environ."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read MCP config {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise ConfigError(f'{path}: expected {{"mcpServers": {{"NAME": {{...}}}}}}')
    servers: dict[str, Any] = data.get("mcpServers", {})
    return {
        name: _server(name, raw, path, _line_of(text, name), environ)
        for name, raw in servers.items()
    }


def _server(
    name: str, raw: Any, path: Path, line: int | None, environ: Mapping[str, str]
) -> ServerConfig:
    where = f"{path}{f' line {line}' if line else ''}: server {name!r}"
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: a name is letters, digits, '_', '.' and '-', starting with a letter or "
            "digit, at most 64 characters"
        )
    try:
        entry = _Entry.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
    if (entry.command is None) == (entry.url is None):
        raise ConfigError(f"{where}: give either `command` (stdio) or `url` (streamable HTTP)")
    if entry.url is not None:
        if entry.type == "stdio":
            raise ConfigError(f"{where}: `type` stdio with a `url`")
        if urlsplit(entry.url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: `url` must be http:// or https://")
        if entry.args or entry.env or entry.cwd:
            raise ConfigError(f"{where}: `args`, `env` and `cwd` are for stdio servers")
    elif entry.type not in (None, "stdio"):
        raise ConfigError(f"{where}: `type` {entry.type} with a `command`")
    elif entry.headers:
        raise ConfigError(f"{where}: `headers` are for HTTP servers")
    cwd = None
    if entry.cwd is not None:
        # Relative to the file, as the [[models]] paths of config.toml are.
        cwd = (path.parent / Path(entry.cwd).expanduser()).resolve()
    return ServerConfig(
        name=name,
        command=entry.command,
        args=tuple(entry.args),
        env=_expand(entry.env, environ, f"{where}: env") if entry.env is not None else None,
        cwd=cwd,
        url=entry.url,
        headers=_expand(entry.headers, environ, f"{where}: headers")
        if entry.headers is not None
        else None,
        enabled=entry.enabled,
        allowed_tools=tuple(entry.allowed_tools) if entry.allowed_tools is not None else None,
        timeout_s=entry.timeout_s,
        auto_inject=entry.auto_inject,
    )


def _expand(values: dict[str, str], environ: Mapping[str, str], where: str) -> dict[str, str]:
    def one(key: str, value: str) -> str:
        def sub(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in environ:
                raise ConfigError(f"{where}.{key}: ${{{variable}}} is not set in the environment")
            return environ[variable]

        return VARIABLE.sub(sub, value)

    return {key: one(key, value) for key, value in values.items()}


def _line_of(text: str, name: str) -> int | None:
    """The line a server's entry starts on (the first `"name":`), for messages."""
    match = re.search(re.escape(json.dumps(name)) + r"\s*:", text)
    return text.count("\n", 0, match.start()) + 1 if match else None

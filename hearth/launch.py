"""`hearth launch AGENT`: a coding agent (OpenCode, Codex CLI, Claude Code) set up for Hearth
and run, the way `ollama launch` does it.

The agent's configuration for Hearth goes into a folder Hearth owns (`<data dir>/agents/NAME`),
pointed to by the agent's own variable (OPENCODE_CONFIG, CODEX_HOME, Claude Code's
`--settings`); the user's configuration is only touched with --write-user-config, after a
backup. An API key never goes into a file: the configs name a variable the child gets. When no
Hearth answers at the address, one is started in this process on a free port for the agent's
lifetime."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hearth.errors import ConfigError
from hearth.settings import Settings

KEY_VARIABLE = "HEARTH_API_KEY"  # what the configs name; the agent's process gets it
NO_KEY = "hearth"  # clients that insist on some key get this when the server needs none
# An agent's own prompt (system prompt and tool list) takes about this many tokens (OpenCode
# sends 7.8k; Claude Code more). Half of what a model's context leaves beside it goes to an
# answer, between these bounds: agents compact their history against context - output, so a
# larger output share would have them compact from the first turn.
AGENT_PROMPT_TOKENS = 8192
AGENT_OUTPUT_MIN = 256
AGENT_OUTPUT_MAX = 32000


@dataclass(frozen=True)
class Target:
    """The server and model an agent is pointed at."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    model: str
    context: int  # tokens one request may use
    max_output: int  # tokens the agent asks for at most in one answer
    api_key: str | None = None


@dataclass
class Setup:
    """What running the agent takes: files written first, its environment and arguments."""

    files: dict[Path, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # before the user's own

    def show(self) -> str:
        """--print: the files with their paths, then the variables (the key masked)."""
        parts = [f"# {path}\n{text.rstrip()}\n" for path, text in self.files.items()]
        if self.env:
            lines = []
            for name, value in self.env.items():
                secret = name in SECRET_VARIABLES and value != NO_KEY
                shown = f"${{{KEY_VARIABLE}}}" if secret else value
                lines.append(f"export {name}={_quote(shown)}")
            parts.append("# environment\n" + "\n".join(lines) + "\n")
        if self.args:
            parts.append("# arguments\n" + " ".join(self.args) + "\n")
        return "\n".join(parts)


# Variables whose value is the API key: --print shows the variable, never the key.
SECRET_VARIABLES = {KEY_VARIABLE, "ANTHROPIC_AUTH_TOKEN"}


def _quote(value: str) -> str:
    safe = value and all(c.isalnum() or c in "-_./:{}$@" for c in value)
    return value if safe else "'" + value.replace("'", "'\\''") + "'"


def _backup(path: Path) -> Path | None:
    """A copy of the user's file beside it, before it is changed; None if there was none."""
    if not path.exists():
        return None
    copy = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.copy2(path, copy)
    return copy


class Agent:
    """One coding agent: how it is found, and how it is pointed at Hearth."""

    name: str
    binary: str
    package: str  # the npm package that installs it

    def setup(self, target: Target, home: Path) -> Setup:
        raise NotImplementedError

    def secrets(self, target: Target) -> dict[str, str]:
        """Variables that carry the API key to the agent (never written to a file)."""
        return {KEY_VARIABLE: target.api_key} if target.api_key else {}

    def user_config(self, target: Target) -> tuple[Path, str, list[str]]:
        """The user's own config file, its text with Hearth added, and the arguments that
        select Hearth with it."""
        raise NotImplementedError

    def install_hint(self) -> str:
        return f"npm install -g {self.package}"


class OpenCode(Agent):
    """OpenCode: an `@ai-sdk/openai-compatible` provider on Chat Completions, with the model's
    context and output limits (it compacts the history against them)."""

    name, binary, package = "opencode", "opencode", "opencode-ai"

    def provider(self, target: Target) -> dict[str, Any]:
        options: dict[str, Any] = {"baseURL": f"{target.url}/v1"}
        if target.api_key:
            options["apiKey"] = f"{{env:{KEY_VARIABLE}}}"
        return {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Hearth",
            "options": options,
            "models": {
                target.model: {
                    "name": target.model,
                    "tool_call": True,
                    "limit": {"context": target.context, "output": target.max_output},
                }
            },
        }

    def setup(self, target: Target, home: Path) -> Setup:
        config = {
            "$schema": "https://opencode.ai/config.json",
            "provider": {"hearth": self.provider(target)},
            "model": f"hearth/{target.model}",
            "small_model": f"hearth/{target.model}",
        }
        path = home / "opencode.json"
        env = {"OPENCODE_CONFIG": str(path), **self.secrets(target)}
        return Setup(files={path: json.dumps(config, indent=2) + "\n"}, env=env)

    def user_config(self, target: Target) -> tuple[Path, str, list[str]]:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        path = base / "opencode" / "opencode.json"
        config = _read_json(path)
        providers = config.setdefault("provider", {})
        if not isinstance(providers, dict):
            raise ConfigError(f"{path}: 'provider' is not an object; not changing it")
        providers["hearth"] = self.provider(target)
        config["model"] = f"hearth/{target.model}"
        return path, json.dumps(config, indent=2) + "\n", []


class Codex(Agent):
    """Codex CLI: a `model_providers.hearth` block on the Responses API (the only wire it
    speaks), in a CODEX_HOME of its own."""

    name, binary, package = "codex", "codex", "@openai/codex"

    def provider(self, target: Target) -> dict[str, Any]:
        block: dict[str, Any] = {
            "name": "Hearth",
            "base_url": f"{target.url}/v1",
            "wire_api": "responses",
        }
        if target.api_key:
            block["env_key"] = KEY_VARIABLE
        return block

    def setup(self, target: Target, home: Path) -> Setup:
        import tomlkit

        doc = tomlkit.document()
        doc["model"] = target.model
        doc["model_provider"] = "hearth"
        doc["model_context_window"] = target.context  # Codex caps no answer: no output key
        providers = tomlkit.table(is_super_table=True)
        providers["hearth"] = self.provider(target)
        doc["model_providers"] = providers
        path = home / "config.toml"
        env = {"CODEX_HOME": str(home), **self.secrets(target)}
        return Setup(files={path: tomlkit.dumps(doc)}, env=env)

    def user_config(self, target: Target) -> tuple[Path, str, list[str]]:
        import tomlkit

        home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
        path = home / "config.toml"
        try:
            doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read it ({exc}); not changing it") from None
        providers = doc.setdefault("model_providers", tomlkit.table(is_super_table=True))
        providers["hearth"] = self.provider(target)
        profiles = doc.setdefault("profiles", tomlkit.table(is_super_table=True))
        profiles["hearth"] = {
            "model": target.model,
            "model_provider": "hearth",
            "model_context_window": target.context,
        }
        return path, tomlkit.dumps(doc), ["--profile", "hearth"]


class ClaudeCode(Agent):
    """Claude Code: Anthropic's Messages API at Hearth's address, every model tier mapped to
    the one model, and answers capped so the prompt still fits beside them."""

    name, binary, package = "claude", "claude", "@anthropic-ai/claude-code"

    def variables(self, target: Target) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": target.url,
            "ANTHROPIC_MODEL": target.model,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": target.model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": target.model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": target.model,
            "CLAUDE_CODE_SUBAGENT_MODEL": target.model,
            # The window it compacts the history against (it assumes one for unknown ids).
            "CLAUDE_CODE_AUTO_COMPACT_WINDOW": str(target.context),
            # The user's own setting of these two wins over Hearth's default.
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": os.environ.get(
                "CLAUDE_CODE_MAX_OUTPUT_TOKENS", str(target.max_output)
            ),
            # No telemetry, update checks or error reports to Anthropic from a local setup.
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": os.environ.get(
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"
            ),
        }

    def secrets(self, target: Target) -> dict[str, str]:
        # The key, or a placeholder (Claude Code wants a token); the user's own Anthropic
        # key is blanked, so it is never sent here nor asked about.
        return {"ANTHROPIC_AUTH_TOKEN": target.api_key or NO_KEY, "ANTHROPIC_API_KEY": ""}

    def setup(self, target: Target, home: Path) -> Setup:
        path = home / "settings.json"
        text = json.dumps({"env": self.variables(target)}, indent=2) + "\n"
        env = self.secrets(target)
        return Setup(files={path: text}, env=env, args=["--settings", str(path)])

    def user_config(self, target: Target) -> tuple[Path, str, list[str]]:
        home = Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
        path = home / "settings.json"
        config = _read_json(path)
        env = config.setdefault("env", {})
        if not isinstance(env, dict):
            raise ConfigError(f"{path}: 'env' is not an object; not changing it")
        env.update(self.variables(target))
        return path, json.dumps(config, indent=2) + "\n", []


AGENTS: dict[str, Agent] = {a.name: a for a in (OpenCode(), Codex(), ClaudeCode())}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not plain JSON ({exc}); not changing it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object; not changing it")
    return data


# -- the server and the model -------------------------------------------------------------------


def server_url(settings: Settings) -> str:
    from hearth.server import local_url

    return local_url(settings.host, settings.port)


def probe(url: str, api_key: str | None) -> bool:
    """Whether a Hearth answers at `url`; a ConfigError when something else holds it."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url}/status", headers=headers, timeout=3.0)
    except httpx.HTTPError:
        return False
    if response.status_code == 401:
        raise ConfigError(f"the Hearth at {url} wants an API key: pass --api-key or set one")
    try:
        is_hearth = response.status_code == 200 and "engine_isolation" in response.json()
    except ValueError:
        is_hearth = False
    if not is_hearth:
        raise ConfigError(f"{url} is served by something that is not Hearth; use --port")
    return True


def choose_model(models: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    """The model asked for (by id or alias), else a loaded one, else the first usable one."""
    usable = [m for m in models if m.get("hearth", {}).get("status") not in ("invalid", None)]
    if wanted is not None:
        low = wanted.strip().lower()
        for m in models:
            if m["id"].lower() == low or low in m.get("hearth", {}).get("aliases", []):
                return m
        names = ", ".join(m["id"] for m in usable) or "none"
        raise ConfigError(f"no model '{wanted}' on this server (it has: {names})")
    for m in usable:
        if m["hearth"]["status"] == "loaded":
            return m
    if not usable:
        raise ConfigError(
            "no usable model: fetch the starter with `hearth starter`, or `hearth pull` one"
        )
    return usable[0]


def target_for(url: str, model: dict[str, Any], api_key: str | None) -> Target:
    """The agent's view of a model from /v1/models: its context, and the most an answer
    asks for (see AGENT_PROMPT_TOKENS; Hearth cuts a cap to the room left in any case)."""
    context = int(model.get("context_window") or 0)
    share = (context - AGENT_PROMPT_TOKENS) // 2
    output = min(AGENT_OUTPUT_MAX, max(AGENT_OUTPUT_MIN, share))
    if model.get("max_output_tokens"):
        output = min(output, int(model["max_output_tokens"]))
    return Target(url=url, model=model["id"], context=context, max_output=output, api_key=api_key)


def list_models(url: str, api_key: str | None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{url}/v1/models", headers=headers, timeout=10.0)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def local_models(settings: Settings) -> list[dict[str, Any]]:
    """What /v1/models would list with these settings, without a server (for --print)."""
    from hearth.models.registry import Registry
    from hearth.runtime import answer_cap, context_plan

    models = []
    for e in Registry(settings.models_dir, configs=settings.model_configs).list():
        if e.error:
            continue
        cfg = e.config
        if e.upstream:
            context = cfg.ctx_size if cfg and cfg.ctx_size else 0
        else:
            context = context_plan(settings, e).ctx_size
        cap = cfg.max_output_tokens if cfg else None
        models.append(
            {
                "id": e.id,
                "context_window": context,
                "max_output_tokens": answer_cap(context, cap),
                "hearth": {"status": "available", "aliases": list(e.aliases)},
            }
        )
    return models


@contextmanager
def hearth_at(settings: Settings, log_file: Path) -> Iterator[str]:
    """The URL of a Hearth: the one answering at the address, else one started here on a
    free port (its log in `log_file`, not over the agent's screen) until the block ends."""
    key = settings.api_key[0] if settings.api_key else None
    url = server_url(settings)
    if probe(url, key):
        yield url
        return
    import logging

    from hearth.server import BackgroundServer, local_url

    server = BackgroundServer(settings.model_copy(update={"port": 0}), announce=lambda _: None)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stream = log_file.open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    try:
        port = server.start()
        yield local_url(settings.host, port)
    finally:
        server.stop()
        stream.close()


# -- running it ---------------------------------------------------------------------------------


def write_files(files: Mapping[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(text)
        partial.replace(path)


def run_agent(binary: str, args: list[str], env: Mapping[str, str]) -> int:
    """Run it in the foreground and give back its exit code. Ctrl-C is the agent's to
    handle (it reaches the whole process group): here it only waits for the agent to end."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.call([binary, *args], env={**os.environ, **env})
    except OSError as exc:
        raise ConfigError(f"could not run {binary}: {exc.strerror}") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def launch(
    settings: Settings,
    agent_name: str,
    *,
    model: str | None,
    agent_args: list[str],
    print_only: bool = False,
    write_user_config: bool = False,
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
) -> int:
    """`hearth launch`: the agent's exit code (or 0 after --print)."""
    agent = AGENTS.get(agent_name)
    if agent is None:
        raise ConfigError(f"unknown agent '{agent_name}'; choose from {', '.join(AGENTS)}")
    key = settings.api_key[0] if settings.api_key else None
    home = settings.data_dir / "agents" / agent.name
    if print_only:
        url = server_url(settings)
        models = list_models(url, key) if probe(url, key) else local_models(settings)
        target = target_for(url, choose_model(models, model), key)
        print(agent.setup(target, home).show(), end="")
        return 0
    binary = shutil.which(agent.binary)
    if binary is None:
        raise ConfigError(
            f"{agent.binary} is not installed (not on PATH); install it with: "
            f"{agent.install_hint()}"
        )
    with hearth_at(settings, home / "hearth.log") as url:
        target = target_for(url, choose_model(list_models(url, key), model), key)
        if write_user_config:
            path, text, args = agent.user_config(target)
            copy = _backup(path)
            write_files({path: text})
            say(f"wrote Hearth into {path}" + (f" (the old one is {copy})" if copy else ""))
            setup = Setup(env=agent.secrets(target), args=args)
        else:
            setup = agent.setup(target, home)
            write_files(setup.files)
        say(f"{agent.name} on {target.model} at {url} (context {target.context})")
        return run_agent(binary, [*setup.args, *agent_args], setup.env)

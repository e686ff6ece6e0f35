"""`hearth run MODEL [PROMPT]`: a chat in the terminal, the way `ollama run` works.

Against the server at --host/--port when one answers (streamed Chat Completions over HTTP),
else in this process (the library, no HTTP). With a prompt (or piped stdin) it answers once
and exits; without, it reads turns: `/bye`, `/clear`, `/set system TEXT`, `/?`, and `\"\"\"`
to start and end a multi-line message. Reasoning is shown dimmed on a terminal, and nothing
but the answer goes to a pipe (no colours, no reasoning)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import httpx

from hearth.errors import HearthError
from hearth.settings import Settings

DIM, RESET, RED = "\x1b[2m", "\x1b[0m", "\x1b[31m"
HELP = """Available commands:
  /set system TEXT   the system message for the turns that follow
  /clear             forget the conversation so far
  /bye               leave (or Ctrl+D)
  /?                 this help
Start and end a message with \"\"\" to write it over several lines.
Ctrl+C stops an answer."""

# (kind, text): kind is "content" or "reasoning".
Delta = tuple[str, str]


class Backend(Protocol):
    def stream(self, body: dict[str, Any]) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...


class RunError(Exception):
    """What went wrong, as the server or the library said it."""


class HttpBackend:
    """A running server's POST /v1/chat/completions, read as server-sent events."""

    def __init__(self, url: str, api_key: str | None):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=url, headers=headers, timeout=None)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Delta]:
        async with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RunError(_message(await response.aread()))
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise RunError(str(chunk["error"].get("message", chunk["error"])))
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("reasoning_content"):
                        yield "reasoning", delta["reasoning_content"]
                    if delta.get("content"):
                        yield "content", delta["content"]

    async def close(self) -> None:
        await self.client.aclose()


class LocalBackend:
    """No server answers: the same pipeline in this process."""

    def __init__(self, settings: Settings):
        from hearth.client import Hearth

        self.hearth = Hearth(settings)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Delta]:
        try:
            chunks = await self.hearth.chat.completions.create(**body)
            assert not hasattr(chunks, "choices"), "a stream was asked for"
            async for chunk in chunks:
                for choice in chunk.choices:
                    if choice.delta.reasoning_content:
                        yield "reasoning", choice.delta.reasoning_content
                    if choice.delta.content:
                        yield "content", choice.delta.content
        except HearthError as exc:
            raise RunError(exc.message) from None

    async def close(self) -> None:
        await self.hearth.close()


def _message(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return str(error["message"] if isinstance(error, dict) else error)
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace")[:500]


async def backend_for(settings: Settings, api_key: str | None) -> Backend:
    """The running server when one answers at --host/--port, else this process."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = f"http://{host}:{settings.port}"
    try:
        async with httpx.AsyncClient(timeout=1.0) as probe:
            if (await probe.get(url + "/health")).status_code in (200, 503):
                return HttpBackend(url, api_key)
    except httpx.HTTPError:
        pass
    return LocalBackend(settings)


@dataclass
class Chat:
    """One conversation: its messages and how its answers are shown."""

    backend: Backend
    model: str
    out: TextIO
    fancy: bool  # a terminal: colours and reasoning
    options: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    async def answer(self, text: str) -> str:
        """Send one user turn and show the answer as it streams; keep both."""
        turn = [*self.messages, {"role": "user", "content": text}]
        head = [{"role": "system", "content": self.system}] if self.system else []
        body = {"model": self.model, "messages": head + turn, "stream": True, **self.options}
        parts: list[str] = []
        thinking = False
        try:
            async for kind, piece in self.backend.stream(body):
                if kind == "reasoning":
                    if self.fancy:
                        self.out.write((DIM if not thinking else "") + piece)
                        thinking = True
                    continue
                if thinking:
                    self.out.write(RESET + "\n\n")
                    thinking = False
                parts.append(piece)
                self.out.write(piece)
                self.out.flush()
        finally:
            if thinking:
                self.out.write(RESET)
            self.out.write("\n")
            self.out.flush()
        answer = "".join(parts)
        self.messages = [*turn, {"role": "assistant", "content": answer}]
        return answer

    def command(self, line: str) -> bool:
        """Handle a /command; False means leave."""
        name, _, rest = line.partition(" ")
        if name in ("/bye", "/exit"):
            return False
        if name == "/clear":
            self.messages = []
            self.out.write("Cleared session context\n")
        elif name == "/set" and rest.startswith("system"):
            self.system = rest.removeprefix("system").strip() or None
            self.out.write("Set system message.\n")
        elif name in ("/?", "/help"):
            self.out.write(HELP + "\n")
        else:
            self.out.write(f"Unknown command '{name}'. Type /? for help\n")
        self.out.flush()
        return True


def read_turn(read: Callable[[str], str]) -> str | None:
    """One message from the user: a line, or the lines between two \"\"\" (None: Ctrl+D)."""
    try:
        line = read(">>> ")
    except EOFError:
        return None
    if not line.lstrip().startswith('"""'):
        return line
    first = line.lstrip()[3:]
    if first.endswith('"""'):
        return first[:-3]
    lines = [first] if first else []
    while True:
        try:
            more = read("... ")
        except EOFError:
            return "\n".join(lines)
        if more.rstrip().endswith('"""'):
            lines.append(more.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(more)


def interactive(chat: Chat, runner: asyncio.Runner) -> None:
    """Turns until /bye or Ctrl+D. Ctrl+C stops an answer: the runner cancels it, which
    closes its request, so the server stops generating too."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            text = read_turn(input)
        except KeyboardInterrupt:
            chat.out.write("\nUse Ctrl + d or /bye to exit.\n")
            continue
        if text is None:
            chat.out.write("\n")
            return
        if not text.strip():
            continue
        if text.startswith("/"):
            if not chat.command(text.strip()):
                return
            continue
        try:
            runner.run(chat.answer(text))
        except KeyboardInterrupt:
            chat.out.write("\n")
        except RunError as exc:
            chat.out.write(_error(str(exc), chat.fancy))
        chat.out.flush()


def _error(message: str, fancy: bool) -> str:
    return f"{RED}Error: {message}{RESET}\n" if fancy else f"Error: {message}\n"


def run(
    settings: Settings,
    model: str,
    prompt: str | None,
    *,
    api_key: str | None,
    options: dict[str, Any],
    system: str | None,
) -> int:
    """The exit status: 0, or 1 after an error."""
    out = sys.stdout
    fancy = out.isatty() and os.environ.get("NO_COLOR") is None
    with asyncio.Runner() as runner:
        backend = runner.run(backend_for(settings, api_key))
        chat = Chat(backend, model, out, fancy, options, system)
        try:
            if prompt is not None:
                runner.run(chat.answer(prompt))
            else:
                interactive(chat, runner)
        except RunError as exc:
            sys.stderr.write(_error(str(exc), fancy and sys.stderr.isatty()))
            return 1
        finally:
            runner.run(backend.close())
    return 0

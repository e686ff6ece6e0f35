"""`hearth run`'s chat without a server: how answers are shown (reasoning dimmed on a
terminal, left out of a pipe), the history kept, the commands, multi-line input."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

from hearth.cli_run import DIM, RESET, Chat, Delta, read_turn


class Scripted:
    """A backend that answers with fixed pieces and keeps what it was sent."""

    def __init__(self, pieces: list[Delta]):
        self.pieces = pieces
        self.bodies: list[dict[str, Any]] = []

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Delta]:
        self.bodies.append(body)
        for piece in self.pieces:
            yield piece

    async def close(self) -> None:
        pass


PIECES: list[Delta] = [("reasoning", "Let me "), ("reasoning", "think."), ("content", "Paris.")]


def test_reasoning_is_dimmed_on_a_terminal_and_left_out_of_a_pipe() -> None:
    out = io.StringIO()
    chat = Chat(Scripted(PIECES), "m", out, fancy=True)
    assert asyncio.run(chat.answer("Capital of France?")) == "Paris."
    assert out.getvalue() == f"{DIM}Let me think.{RESET}\n\nParis.\n"
    plain = io.StringIO()
    asyncio.run(Chat(Scripted(PIECES), "m", plain, fancy=False).answer("Capital?"))
    assert plain.getvalue() == "Paris.\n"


def test_the_history_the_system_message_and_clear() -> None:
    backend = Scripted([("content", "Hi.")])
    chat = Chat(backend, "m", io.StringIO(), fancy=False, options={"max_tokens": 5})
    assert chat.command("/set system Be brief.")
    asyncio.run(chat.answer("One"))
    asyncio.run(chat.answer("Two"))
    sent = backend.bodies[-1]
    assert sent["max_tokens"] == 5 and sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "Be brief."
    assert chat.command("/clear") and chat.messages == []
    assert not chat.command("/bye")


def test_multi_line_input() -> None:
    lines = iter(['"""First', "second", 'third"""'])
    assert read_turn(lambda _: next(lines)) == "First\nsecond\nthird"
    assert read_turn(lambda _: '"""one line"""') == "one line"
    assert read_turn(lambda _: "plain") == "plain"

    def eof(_: str) -> str:
        raise EOFError

    assert read_turn(eof) is None

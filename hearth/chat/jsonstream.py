"""Reading tool-call JSON while it streams: {"name": ..., "arguments": {...}}, one character
at a time, so argument text can be passed on before the object is complete."""

from __future__ import annotations

import json

WHITESPACE = " \t\r\n"


class NotACall(ValueError):
    """The text cannot be a tool-call object."""


class ValueScanner:
    """Finds where one JSON value ends in text fed piece by piece (without parsing it)."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escaped = False
        self.scalar = False

    def feed(self, text: str) -> int | None:
        """Index in `text` just past the value's end, or None if it goes on."""
        for i, ch in enumerate(text):
            if not self.started:
                self.started = True
                if ch in "{[":
                    self.depth = 1
                elif ch == '"':
                    self.in_string = True
                else:
                    self.scalar = True
                continue
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
                    if self.depth == 0:
                        return i + 1
            elif self.scalar:
                if ch in ",}]" or ch in WHITESPACE:
                    return i
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return i + 1
        return None


def string_end(text: str, start: int) -> int:
    """Index past the JSON string opening at text[start], or -1 if it is not complete yet."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return -1


class CallReader:
    """One tool-call object as it streams. `events()` after each feed gives ("name", str) and
    ("args", str) items; arguments stream as soon as the name is known (else they wait).
    Keys other than the name and arguments are skipped."""

    NAME_KEYS = ("name",)
    ARGS_KEYS = ("arguments", "parameters")

    def __init__(self) -> None:
        self.buf = ""
        self.pos = 0
        self.state = "open"
        self.key = ""
        self.name: str | None = None
        self.args_streamed = False
        self.pending_args = ""
        self.scanner: ValueScanner | None = None
        self.out: list[tuple[str, str]] = []
        self.done = False

    def feed(self, text: str) -> str | None:
        """Consume text; returns what follows the object once it has ended, else None."""
        self.buf += text
        while not self.done and self._step():
            pass
        if self.done:
            rest = self.buf[self.pos :]
            self.buf, self.pos = "", 0
            return rest
        # Only the unread text is kept, so the buffer does not grow with the arguments.
        self.buf, self.pos = self.buf[self.pos :], 0
        return None

    def events(self) -> list[tuple[str, str]]:
        out, self.out = self.out, []
        return out

    def _skip_ws(self) -> bool:
        while self.pos < len(self.buf) and self.buf[self.pos] in WHITESPACE:
            self.pos += 1
        return self.pos < len(self.buf)

    def _step(self) -> bool:
        """Advance one state; False when more text is needed."""
        if self.state in ("args", "skip"):
            return self._value_body()
        if not self._skip_ws():
            return False
        ch = self.buf[self.pos]
        if self.state == "open":
            if ch != "{":
                raise NotACall(f"expected '{{', got {ch!r}")
            self.pos += 1
            self.state = "key"
        elif self.state == "key":
            if ch == "}":
                self.pos += 1
                self._end()
            elif ch == ",":
                self.pos += 1
            elif ch == '"':
                end = string_end(self.buf, self.pos)
                if end < 0:
                    return False
                self.key = json.loads(self.buf[self.pos : end])
                self.pos = end
                self.state = "colon"
            else:
                raise NotACall(f"expected a key, got {ch!r}")
        elif self.state == "colon":
            if ch != ":":
                raise NotACall(f"expected ':', got {ch!r}")
            self.pos += 1
            self.state = "value"
        else:
            return self._value_start(ch)
        return True

    def _value_start(self, ch: str) -> bool:
        if self.key in self.NAME_KEYS and self.name is None:
            if ch != '"':
                raise NotACall("the function name is not a string")
            end = string_end(self.buf, self.pos)
            if end < 0:
                return False
            self.name = str(json.loads(self.buf[self.pos : end]))
            self.pos = end
            self.out.append(("name", self.name))
            if self.pending_args:
                self._args(self.pending_args)
                self.pending_args = ""
            self.state = "key"
            return True
        if self.key in self.ARGS_KEYS and ch == '"':  # arguments sent as a JSON string
            end = string_end(self.buf, self.pos)
            if end < 0:
                return False
            self._args(str(json.loads(self.buf[self.pos : end])))
            self.pos = end
            self.state = "key"
            return True
        self.scanner = ValueScanner()
        self.state = "args" if self.key in self.ARGS_KEYS else "skip"
        return True

    def _value_body(self) -> bool:
        assert self.scanner is not None
        chunk = self.buf[self.pos :]
        if not chunk:
            return False
        end = self.scanner.feed(chunk)
        piece = chunk if end is None else chunk[:end]
        if self.state == "args":
            self._args(piece)
        self.pos += len(piece)
        if end is None:
            return False
        self.state = "key"
        return True

    def _args(self, text: str) -> None:
        if not text:
            return
        if self.name is None:
            self.pending_args += text
        else:
            self.args_streamed = True
            self.out.append(("args", text))

    def _end(self) -> None:
        if self.name is None:
            raise NotACall("the object has no function name")
        if not self.args_streamed:
            self.out.append(("args", "{}"))
        self.done = True


class CallSequence:
    """One call object, or a JSON array of them, as it streams. `events()` gives ("start",
    name) and ("args", text) items in order."""

    def __init__(self) -> None:
        self.state = "open"
        self.array = False
        self.reader: CallReader | None = None
        self.out: list[tuple[str, str]] = []

    def feed(self, text: str) -> str | None:
        """Consume text; returns what follows the sequence once it has ended, else None."""
        while True:
            if self.reader is not None:
                rest = self.reader.feed(text)
                self._collect()
                if rest is None:
                    return None
                self.reader, text = None, rest
                if not self.array:
                    return text
                self.state = "item"
            stripped = text.lstrip(WHITESPACE)
            if not stripped:
                return None
            ch = stripped[0]
            if self.state == "open" and ch == "[":
                self.array, self.state, text = True, "item", stripped[1:]
            elif ch == "{":
                self.reader, text = CallReader(), stripped
            elif self.state == "item" and ch == ",":
                text = stripped[1:]
            elif self.state == "item" and ch == "]":
                return stripped[1:]
            else:
                raise NotACall(f"unexpected {ch!r} where a tool call should be")

    def events(self) -> list[tuple[str, str]]:
        out, self.out = self.out, []
        return out

    def _collect(self) -> None:
        assert self.reader is not None
        for kind, value in self.reader.events():
            self.out.append(("start" if kind == "name" else "args", value))

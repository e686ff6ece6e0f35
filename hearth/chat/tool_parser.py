"""Streaming tool-call extraction, one parser per output format. Each turns a choice's content
text into Content, ToolCallStart and ToolCallArgs pieces; markup never reaches the content
unless the model breaks its own format (then the unparsable text is content, not lost)."""

from __future__ import annotations

import abc
from collections.abc import Callable

from hearth.chat.jsonstream import WHITESPACE, CallSequence, NotACall, ValueScanner
from hearth.chat.pieces import Content, Piece, ToolCallArgs, ToolCallStart, find_marker

HERMES_START, HERMES_END = "<tool_call>", "</tool_call>"
MISTRAL_CALLS, MISTRAL_ARGS, MISTRAL_CALL_ID = "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"
PYTHON_TAG = "<|python_tag|>"


class ToolParser(abc.ABC):
    """Base: call numbering and the text not yet claimed by a call."""

    def __init__(self, new_id: Callable[[], str], state: str = "text"):
        self.new_id = new_id
        self.state = state
        self.seq = CallSequence()
        self.calls = 0
        self.buf = ""
        self.unclaimed = ""  # raw text of the current call block not yet turned into pieces
        self.out: list[Piece] = []

    def feed(self, text: str) -> list[Piece]:
        """Pieces for this text; what may still be markup is held back."""
        self.buf += text
        self._run()
        out, self.out = self.out, []
        return out

    def finish(self) -> list[Piece]:
        """The end of the output. A call block still open was cut off (max_tokens, stop): what
        of it is not a call yet is dropped, as it is markup."""
        self._run()
        self._finish()
        out, self.out = self.out, []
        return out

    @abc.abstractmethod
    def _run(self) -> None: ...

    def _finish(self) -> None:
        """What is left of the buffer at the end: content in the text state, else markup."""
        if self.state == "text":
            self._content(self.buf)
        self.buf = ""

    def _text_until(self, marker: str) -> bool:
        """Pass on the buffer as content up to `marker` and drop the marker; False when it is
        absent (what may be its beginning stays in the buffer)."""
        before, self.buf, found = find_marker(self.buf, marker)
        self._content(before)
        return found

    def _content(self, text: str) -> None:
        if text:
            if self.out and isinstance(self.out[-1], Content):
                self.out[-1].text += text
            else:
                self.out.append(Content(text))

    def _start_call(self, name: str) -> None:
        self.out.append(ToolCallStart(self.calls, self.new_id(), name))
        self.calls += 1
        self.unclaimed = ""

    def _args(self, text: str) -> None:
        last = self.out[-1] if self.out else None
        if isinstance(last, ToolCallArgs) and last.index == self.calls - 1:
            last.text += text
        else:
            self.out.append(ToolCallArgs(self.calls - 1, text))
        self.unclaimed = ""

    def _read(self, seq: CallSequence, text: str) -> str | None:
        """Feed a call sequence, turning its events into pieces; NotACall propagates."""
        self.unclaimed += text
        rest = seq.feed(text)
        for kind, value in seq.events():
            if kind == "start":
                self._start_call(value)
            else:
                self._args(value)
        if rest is not None:  # what follows the calls is not part of them
            self.unclaimed = self.unclaimed[: len(self.unclaimed) - len(rest)]
        return rest

    def _give_up(self, text: str = "") -> None:
        """The model broke the format: its unparsed text is content after all."""
        self._content(self.unclaimed + text)
        self.unclaimed = ""

    def _calls(self, then: str) -> bool:
        """Run the open call sequence over the buffer, then go to state `then`; False when it
        needs more text. Text that breaks the format becomes content."""
        text, self.buf = self.buf, ""
        try:
            left = self._read(self.seq, text)
        except NotACall:
            self._give_up()
            self.state = "text"
            return True
        if left is None:
            return False
        self.buf, self.state = left, then
        return True


class HermesParser(ToolParser):
    """Hermes / Qwen: <tool_call>{"name": ..., "arguments": {...}}</tool_call>, one block per
    call (a JSON array inside one block is read too)."""

    def _run(self) -> None:
        while self.buf:
            if self.state == "text":
                if not self._text_until(HERMES_START):
                    return
                self.state, self.seq, self.unclaimed = "calls", CallSequence(), HERMES_START
            elif self.state == "calls":
                if not self._calls(then="close"):
                    return
            elif self.state == "close":
                stripped = self.buf.lstrip(WHITESPACE)
                if stripped.startswith(HERMES_END):
                    self.buf, self.state = stripped[len(HERMES_END) :], "between"
                elif HERMES_END.startswith(stripped):
                    return
                else:
                    self.state = "text"  # no closing tag: what follows is content
            else:  # between calls: whitespace is dropped
                self.buf = self.buf.lstrip(WHITESPACE)
                if not self.buf:
                    return
                self.state = "text"


class MistralParser(ToolParser):
    """Mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (v3 to v7 templates) or
    [TOOL_CALLS]name[ARGS]{...} per call (v11 templates; [CALL_ID]id may sit between)."""

    def __init__(self, new_id: Callable[[], str]):
        super().__init__(new_id)
        self.scanner = ValueScanner()

    def _run(self) -> None:
        while self.buf:
            if self.state == "text":
                if not self._text_until(MISTRAL_CALLS):
                    return
                self.state, self.unclaimed = "marker", MISTRAL_CALLS
            elif self.state == "marker":
                stripped = self.buf.lstrip(WHITESPACE)
                if not stripped:
                    return
                self.buf = stripped
                self.state = "json" if stripped[0] == "[" else "name"
                self.seq = CallSequence()
            elif self.state == "json":
                if not self._calls(then="after"):
                    return
            elif self.state == "name":
                if not self._name():
                    return
            elif self.state == "args":
                if not self._arguments():
                    return
            else:  # after a call: another [TOOL_CALLS], or content
                stripped = self.buf.lstrip(WHITESPACE)
                if stripped.startswith(MISTRAL_CALLS):
                    self.buf, self.state = stripped[len(MISTRAL_CALLS) :], "marker"
                    self.unclaimed = MISTRAL_CALLS
                elif MISTRAL_CALLS.startswith(stripped):
                    self.buf = stripped
                    return
                else:
                    self.buf, self.state = stripped, "text"

    def _name(self) -> bool:
        found = [(at, m) for m in (MISTRAL_ARGS, MISTRAL_CALL_ID) if (at := self.buf.find(m)) >= 0]
        if not found:
            return False
        at, marker = min(found)
        name, rest = self.buf[:at].strip(), self.buf[at + len(marker) :]
        if marker == MISTRAL_CALL_ID:  # the model's own id; ours replaces it
            end = rest.find(MISTRAL_ARGS)
            if end < 0:
                return False
            rest = rest[end + len(MISTRAL_ARGS) :]
        if not name or any(c in name for c in '{}[]"\n'):
            self._give_up()
            self.state = "text"
            return True
        self._start_call(name)
        self.buf, self.state, self.scanner = rest, "args", ValueScanner()
        return True

    def _arguments(self) -> bool:
        if not self.scanner.started:
            self.buf = self.buf.lstrip(WHITESPACE)
            if not self.buf:
                return False
        end = self.scanner.feed(self.buf)
        piece = self.buf if end is None else self.buf[:end]
        if piece:
            self._args(piece)
        if end is None:
            self.buf = ""
            return False
        self.buf, self.state = self.buf[end:], "after"
        return True


class JsonStartParser(ToolParser):
    """Llama 3.x and the generic form: the whole reply is one call object (Llama 3 names the
    arguments `parameters` and may start with <|python_tag|>), several separated by ';' or
    whitespace, or a JSON array of calls. Any other reply is content."""

    def __init__(self, new_id: Callable[[], str]):
        super().__init__(new_id, state="start")

    def _run(self) -> None:
        while self.buf:
            if self.state == "start":
                verdict = _sniff_call(self.buf)
                if verdict is None:
                    return
                if not verdict:
                    self.state = "text"
                    continue
                stripped = self.buf.lstrip(WHITESPACE)
                if stripped.startswith(PYTHON_TAG):
                    stripped = stripped[len(PYTHON_TAG) :]
                self.buf, self.state, self.seq = stripped, "calls", CallSequence()
            elif self.state == "calls":
                if not self._calls(then="between"):
                    return
            elif self.state == "between":
                stripped = self.buf.lstrip(WHITESPACE + ";")
                if not stripped:
                    self.buf = ""
                    return
                if stripped[0] == "{":
                    self.buf, self.state, self.seq = stripped, "calls", CallSequence()
                else:
                    self.buf, self.state = stripped, "text"
            else:
                self._content(self.buf)
                self.buf = ""

    def _finish(self) -> None:
        if self.state in ("start", "text"):
            self._content(self.buf)
        self.buf = ""


def _sniff_call(text: str) -> bool | None:
    """Whether a reply starting with `text` is a call object or array: None while unsure."""
    s = text.lstrip(WHITESPACE)
    if not s:
        return None
    if s.startswith(PYTHON_TAG):
        s = s[len(PYTHON_TAG) :].lstrip(WHITESPACE)
    elif PYTHON_TAG.startswith(s):
        return None
    if s.startswith("["):
        s = s[1:].lstrip(WHITESPACE)
    if not s:
        return None
    if s[0] != "{":
        return False
    s = s[1:].lstrip(WHITESPACE)
    key = '"name"'
    if len(s) < len(key):
        return None if key.startswith(s) else False
    return s.startswith(key)

"""One choice's generated text into message parts: reasoning first, then tool calls in what
remains, as pieces that streams send at once and full responses gather."""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.chat.pieces import Content, Piece, Reasoning, ToolCallArgs, ToolCallStart
from hearth.chat.reasoning import HarmonyParser, ReasoningParser
from hearth.chat.tool_parser import ToolParser


class OutputParser:
    """Reasoning split, then tool-call extraction, for one choice."""

    def __init__(
        self,
        reasoning: ReasoningParser | HarmonyParser | None = None,
        tools: ToolParser | None = None,
        *,
        parallel: bool = True,
        prefix: str = "",
    ):
        self.reasoning = reasoning
        self.tools = tools
        self.parallel = parallel
        self.prefix = prefix  # content sent before the first piece (raw reasoning's open marker)

    def feed(self, text: str) -> list[Piece]:
        """Pieces that are certain after this text."""
        if self.reasoning is None and self.tools is None and not self.prefix:
            return [Content(text)] if text else []  # plain text (raw prompts): as it came
        if self.prefix:
            text, self.prefix = self.prefix + text, ""
        pieces: list[Piece] = self.reasoning.feed(text) if self.reasoning else [Content(text)]
        return self._keep(self._tools(pieces))

    def finish(self) -> list[Piece]:
        """The rest, at the end of the choice."""
        pieces = self.reasoning.finish() if self.reasoning else []
        if self.prefix:
            pieces.insert(0, Content(self.prefix))
            self.prefix = ""
        out = self._tools(pieces)
        if self.tools is not None:
            out += self.tools.finish()
        return self._keep(out)

    def _tools(self, pieces: list[Piece]) -> list[Piece]:
        if self.tools is None:
            return pieces
        out: list[Piece] = []
        for piece in pieces:
            if isinstance(piece, Content):
                out += self.tools.feed(piece.text)
            else:
                out.append(piece)
        return out

    def _keep(self, pieces: list[Piece]) -> list[Piece]:
        out = [p for p in pieces if not (isinstance(p, Content | Reasoning) and not p.text)]
        if self.parallel:
            return out
        # parallel_tool_calls=false: the first call only.
        return [p for p in out if not isinstance(p, ToolCallStart | ToolCallArgs) or p.index == 0]


@dataclass(slots=True)
class ToolCallParts:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MessageParts:
    """Pieces of one choice gathered into a whole message."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallParts] = field(default_factory=list)

    def add(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            if isinstance(piece, Content):
                self.content.append(piece.text)
            elif isinstance(piece, Reasoning):
                self.reasoning.append(piece.text)
            elif isinstance(piece, ToolCallStart):
                self.tool_calls.append(ToolCallParts(piece.id, piece.name))
            elif isinstance(piece, ToolCallArgs):
                self.tool_calls[piece.index].arguments.append(piece.text)

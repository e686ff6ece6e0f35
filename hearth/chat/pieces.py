"""What the output parsers turn generated text into, and the marker search they share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Content:
    text: str


@dataclass(slots=True)
class Reasoning:
    text: str


@dataclass(slots=True)
class ToolCallStart:
    """A new tool call: its position among this choice's calls, id and function name."""

    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolCallArgs:
    """More of a tool call's arguments (JSON text; all pieces together form the object)."""

    index: int
    text: str


@dataclass(slots=True)
class ToolCallEnd:
    """A tool call's arguments are complete."""

    index: int


Piece = Content | Reasoning | ToolCallStart | ToolCallArgs | ToolCallEnd


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker`: text that
    must be held back because the marker may be arriving in pieces."""
    for k in range(min(len(text), len(marker) - 1), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def find_marker(text: str, marker: str) -> tuple[str, str, bool]:
    """Split at the first `marker`: (before, after, True); or, when absent, (what is safe to
    pass on, what to hold back, False)."""
    at = text.find(marker)
    if at >= 0:
        return text[:at], text[at + len(marker) :], True
    keep = partial_suffix(text, marker)
    return text[: len(text) - keep], text[len(text) - keep :], False

"""Token bytes to text without ever splitting a UTF-8 character.

A token may carry part of a character (byte-level BPE splits emoji and CJK across tokens);
the incomplete bytes wait for the next token instead of becoming U+FFFD."""

from __future__ import annotations

import codecs

_Decoder = codecs.getincrementaldecoder("utf-8")


class Utf8Stream:
    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder(errors="replace")

    def feed(self, data: bytes) -> str:
        """Text completed by these bytes (possibly empty)."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """At the end: bytes that never completed a character become U+FFFD."""
        return self._decoder.decode(b"", final=True)

"""Stop strings that may span tokens.

Text is held back while it could still be the start of a stop string, so a stop string never
reaches the client, not even in part."""

from __future__ import annotations


class StopMatcher:
    """Feeds decoded text through; returns what is safe to emit and whether a stop was hit."""

    __slots__ = ("_held", "_max_len", "_stops", "matched")

    def __init__(self, stops: list[str]):
        self._stops = [s for s in stops if s]
        self._max_len = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self.matched: str | None = None  # the stop string found, once one is

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, True when a stop string was found)."""
        if not self._stops:
            return text, False
        buf = self._held + text
        cut = -1
        for stop in self._stops:
            at = buf.find(stop)
            if at != -1 and (cut == -1 or at < cut):
                cut = at
                self.matched = stop
        if cut != -1:
            self._held = ""
            return buf[:cut], True
        keep = self._partial_suffix(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """At the end of generation, what was held back is plain text after all."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of buf that is a proper prefix of some stop string."""
        for length in range(min(len(buf), self._max_len - 1), 0, -1):
            tail = buf[len(buf) - length :]
            if any(stop.startswith(tail) for stop in self._stops):
                return length
        return 0

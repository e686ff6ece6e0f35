"""A JSON body checked as it streams in, before any parser sees it: what Python's json would
accept (or recurse on) but no request may carry. Syntax itself is left to the parser."""

from __future__ import annotations

import codecs
import re
from itertools import accumulate

# Real requests nest a few levels (a tool's JSON Schema a few dozen); 100 keeps json, pydantic
# and the schema-to-grammar compiler, all recursive, far from Python's recursion limit.
MAX_JSON_DEPTH = 100

# A string's characters, up to its closing quote, a lone surrogate escape or an escape the
# chunk's end cut. Possessive throughout, so a string the chunk cuts fails in linear time.
_STRING_BODY = (
    r'(?:[^"\\]++|\\[^u]|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4}'
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})*+"
)
# Outside strings: anything but a quote or the N and I of NaN and Infinity, and whole strings;
# what stops it is handled one character at a time.
_SEGMENT = re.compile(rf'(?:[^"NI]++|"{_STRING_BODY}")*+')
_STRING = re.compile(rf'"{_STRING_BODY}"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_INSIDE = re.compile(_STRING_BODY)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_ESCAPE_MAX = 12  # the longest escape: a surrogate pair


class JsonBodyScan:
    """Feed a body's chunks in order; each feed says the first problem found so far. Refused:
    bytes that are not UTF-8, nesting deeper than max_depth, NaN and Infinity (Python's json
    reads them), and lone surrogate escapes such as "\\ud800" (Python's json reads them
    into text that cannot be encoded again, so the tokenizer would fail on it)."""

    def __init__(self, max_depth: int = MAX_JSON_DEPTH):
        self.max_depth = max_depth
        self.depth = 0
        self.in_string = False
        self.tail = ""  # an escape cut by the chunk's end, scanned with the next chunk
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, data: bytes, final: bool) -> str | None:
        try:
            text = self.tail + self.decoder.decode(data, final)
        except UnicodeDecodeError:
            return "the request body is not valid UTF-8"
        self.tail = ""
        pos, end = 0, len(text)
        while pos < end:
            if self.in_string:
                pos = _match_end(_INSIDE, text, pos)
                if pos >= end:
                    break
                if text[pos] == '"':
                    self.in_string = False
                    pos += 1
                    continue
                # A backslash: a lone surrogate escape, or an escape the chunk's end may have cut.
                if end - pos < _ESCAPE_MAX and not final:
                    self.tail = text[pos:]
                    break
                if _SURROGATE.match(text, pos):
                    return f"the request body has a lone surrogate escape {text[pos : pos + 6]}"
                pos += 2  # a malformed escape: the parser's to refuse
                continue
            stop = _match_end(_SEGMENT, text, pos)
            problem = self._brackets(text[pos:stop])
            if problem or stop >= end:
                return problem
            pos = stop + 1
            if text[stop] == '"':
                self.in_string = True
            else:
                return "the request body is not valid JSON: NaN, Infinity or another bare word"
        return None

    def _brackets(self, segment: str) -> str | None:
        """Follow the depth through a stretch outside strings (whole strings it holds aside)."""
        if '"' in segment:
            segment = _STRING.sub("", segment)
        brackets = _NOT_BRACKET.sub("", segment)
        opens = brackets.count("[") + brackets.count("{")
        if self.depth + opens > self.max_depth:
            peak = max(accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
            if peak > self.max_depth:
                return f"the request body nests deeper than {self.max_depth} levels"
        self.depth += 2 * opens - len(brackets)
        return None


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos

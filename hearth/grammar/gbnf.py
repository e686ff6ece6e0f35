"""GBNF (llama.cpp's grammar format) building blocks: escaping, a rule set with unique names,
JSON primitives, and "any text without a marker" rules.

Rule names may hold letters, digits and '-' only. Value rules never include surrounding
whitespace; containers place `ws` where JSON allows it."""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_LITERAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CLASS_SPECIAL = set("]\\-^[")

# One optional space: compact JSON. Small models given newlines and indentation spend tokens
# on them (and wander: a comma alone on a line), which also makes outputs slower.
WS_RULE = '" "?'

JSON_RULES = {
    "ws": WS_RULE,
    "json-char": '[^"\\\\\\x00-\\x1F\\x7F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "json-string": '"\\"" json-char* "\\""',
    "json-int": '"-"? ( "0" | [1-9] [0-9]{0,15} )',
    "json-number": 'json-int ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?',
    "json-bool": '"true" | "false"',
    "json-null": '"null"',
    "json-kv": 'json-string ws ":" ws json-value ws',
    "json-object": '"{" ws ( json-kv ( "," ws json-kv )* )? "}"',
    "json-array": '"[" ws ( json-value ws ( "," ws json-value ws )* )? "]"',
    "json-value": ("json-object | json-array | json-string | json-number | json-bool | json-null"),
}
_JSON_DEPS = {
    "json-string": ["json-char"],
    "json-number": ["json-int"],
    "json-kv": ["json-string", "ws", "json-value"],
    "json-object": ["ws", "json-kv"],
    "json-array": ["ws", "json-value"],
    "json-value": [
        "json-object",
        "json-array",
        "json-string",
        "json-number",
        "json-bool",
        "json-null",
    ],
}


def literal(text: str) -> str:
    """A GBNF string literal matching exactly `text`."""
    out = []
    for ch in text:
        if ch in _LITERAL_ESCAPES:
            out.append(_LITERAL_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _class_char(ch: str) -> str:
    if ch in _CLASS_SPECIAL:
        return "\\" + ch
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02X}"
    return ch


def char_class(chars: Iterable[str], *, negate: bool = False) -> str:
    """A GBNF character class of these characters (or of all others)."""
    body = "".join(_class_char(c) for c in sorted(set(chars)))
    return f"[{'^' if negate else ''}{body}]"


class RuleSet:
    """The rules of one grammar under construction. Names are made unique on request."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}

    def fresh(self, hint: str) -> str:
        """A rule name not used yet, derived from `hint`."""
        base = _NAME_CHARS.sub("-", hint).strip("-").lower() or "r"
        name, n = base, 1
        while name in self.rules or name == "root":
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = ""  # reserved, so recursive definitions can refer to it
        return name

    def add(self, hint: str, body: str) -> str:
        """Define a new rule and return its name; an identical body reuses the existing rule."""
        for name, existing in self.rules.items():
            if existing == body and name != "root":
                return name
        name = self.fresh(hint)
        self.rules[name] = body
        return name

    def set(self, name: str, body: str) -> None:
        self.rules[name] = body

    def json(self, name: str = "json-value") -> str:
        """Make sure the JSON primitive `name` and what it needs are defined; returns the name."""
        todo = [name]
        while todo:
            rule = todo.pop()
            if rule not in self.rules:
                self.rules[rule] = JSON_RULES[rule]
                todo.extend(_JSON_DEPS.get(rule, []))
        return name

    def render(self, root: str) -> str:
        """The grammar text with `root` as the start rule."""
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items() if name != "root"]
        return "\n".join(lines) + "\n"


def _kmp_next(marker: str, state: int, ch: str) -> int:
    """How much of `marker` is matched after reading `ch` with `state` characters matched."""
    text = marker[:state] + ch
    for k in range(min(len(text), len(marker)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0


def text_without(rules: RuleSet, marker: str, hint: str = "text") -> str:
    """A rule matching any text (empty included) in which `marker` does not occur.

    One rule per matched-prefix length, as a tiny automaton, so text such as '<<tool_call>'
    cannot slip the marker past the grammar."""
    names = [rules.fresh(f"{hint}-{i}") for i in range(len(marker))]
    distinct = sorted(set(marker))
    for state, name in enumerate(names):
        alts = [f"{char_class(distinct, negate=True)} {names[0]}"]
        for ch in distinct:
            nxt = _kmp_next(marker, state, ch)
            if nxt < len(marker):
                alts.append(f"{literal(ch)} {names[nxt]}")
        rules.set(name, "( " + " | ".join(alts) + " )?")
    return names[0]


def text_until(rules: RuleSet, marker: str, hint: str = "until") -> str:
    """A rule matching text without `marker`, then `marker` itself."""
    body = text_without(rules, marker, hint)
    return rules.add(hint, f"{body} {literal(marker)}")


_WORD = re.compile(r"[a-zA-Z0-9-]+")
_DEFINES = re.compile(r"[ \t]*::=")

# llama.cpp parses GBNF by recursive descent, C stack frames per '(' level: deep nesting
# would overflow the stack and kill the server. Written grammars nest a handful of levels.
MAX_GRAMMAR_DEPTH = 64
# It also recurses once per rule or group on the way to a terminal (~200 bytes of stack
# each): 1,800 rules each 64 groups deep overflowed an 8 MiB stack. This many is 2 MiB at most.
MAX_GRAMMAR_RULES = 8192
# Parse time and the grammar sampler's work grow with it; written grammars are a few KiB.
MAX_GRAMMAR_CHARS = 256 * 1024


def gbnf_problem(text: str) -> str | None:
    """A first problem found in a user's GBNF grammar (llama.cpp prints its own parse errors
    to the server's stderr only), or None. llama.cpp's parser stays the final judge, but
    only of grammars within the bounds that keep it safe."""
    if len(text) > MAX_GRAMMAR_CHARS:
        return f"it is longer than {MAX_GRAMMAR_CHARS} characters"
    defined: set[str] = set()
    used: dict[str, int] = {}
    depth = rules = 0
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch in '"[':
            close = '"' if ch == '"' else "]"
            j = i + 1
            while j < n and text[j] != close and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            if j >= n or text[j] != close:
                kind = "string literal" if ch == '"' else "character class"
                return f"unterminated {kind} on line {line}"
            i = j + 1
            continue
        if ch == "{":  # a repetition count such as {2,5}
            i = text.find("}", i) + 1 or n
            continue
        match = _WORD.match(text, i)
        if match:
            word = match.group()
            if _DEFINES.match(text, match.end()):
                defined.add(word)
                rules += 1
            elif not word[0].isdigit():
                used.setdefault(word, line)
            i = match.end()
            continue
        if ch == "(":
            depth += 1
            rules += 1
            if depth > MAX_GRAMMAR_DEPTH:
                return f"parentheses nest deeper than {MAX_GRAMMAR_DEPTH} levels on line {line}"
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"unbalanced ')' on line {line}"
        if rules > MAX_GRAMMAR_RULES:
            return f"it has more than {MAX_GRAMMAR_RULES} rules and parenthesized groups"
        i += 1
    if depth:
        return "unbalanced '(' in the grammar"
    if "root" not in defined:
        return "the grammar has no 'root' rule"
    for word, at in used.items():
        if word not in defined:
            return f"rule '{word}' is used on line {at} but never defined"
    return None

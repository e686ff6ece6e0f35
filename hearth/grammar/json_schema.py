"""JSON Schema to GBNF. Every validation keyword is either enforced by the grammar or refused
with a 400 that names it: a schema is never silently loosened into an unconstrained run.

Objects list their properties in schema order; optional ones may be left out. Keys beyond
`properties` are generated only when `additionalProperties` is `true` or a schema; an object
with no `properties` key at all takes any keys, but `"properties": {}` (a tool that takes no
arguments) is the empty object."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from hearth.errors import InvalidRequestError
from hearth.grammar.gbnf import RuleSet, literal
from hearth.grammar.ranges import int_bounds, int_range

# Keywords that only describe; they never change which documents are valid.
ANNOTATIONS = {
    "title",
    "description",
    "default",
    "examples",
    "example",
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "deprecated",
    "readOnly",
    "writeOnly",
    "discriminator",
    "nullable",
    "contentMediaType",
    "contentEncoding",
}
UNSUPPORTED = {
    "pattern",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "if",
    "then",
    "else",
    "not",
    "contains",
    "minContains",
    "maxContains",
    "multipleOf",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
}
NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# Deeper than any real schema; keeps the recursive converter far from Python's recursion limit
# (a $ref chain nests without nesting JSON).
MAX_SCHEMA_DEPTH = 64
# Integer bounds up to 20 digits (uint64's maximum has 20); the range grammar grows with them.
MAX_BOUND = 10**20
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

_DATE = '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )'
_TIME = (
    '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
    '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'
)
_HEX = "[0-9a-fA-F]"
FORMATS = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f'{_DATE} "T" {_TIME}',
    "uuid": ' "-" '.join(f"{_HEX}{{{n}}}" for n in (8, 4, 4, 4, 12)),
}


class SchemaConverter:
    """Turns one JSON Schema into rules of a RuleSet; errors name `param` and a schema path."""

    def __init__(self, rules: RuleSet, root: Any, *, param: str):
        self.rules = rules
        self.root = root
        self.param = param
        self._refs: dict[str, str] = {}
        self._depth = 0

    def fail(self, what: str, path: str) -> InvalidRequestError:
        where = path or "the top level"
        return InvalidRequestError(
            f"JSON Schema {what} at {where} is not supported: Hearth enforces schemas with a "
            "grammar and cannot enforce this",
            param=self.param,
            code="unsupported_schema",
        )

    def convert(self, hint: str = "schema") -> str:
        """The rule name matching the whole schema."""
        return self.visit(self.root, "", hint)

    # -- dispatch ---------------------------------------------------------------------------

    def invalid(self, key: str, path: str, wanted: str, value: Any) -> InvalidRequestError:
        return InvalidRequestError(
            f"JSON Schema keyword '{key}' at {path or 'the top level'} must be {wanted}, "
            f"got {json.dumps(value, default=repr)}",
            param=self.param,
        )

    def count(self, schema: Mapping[str, Any], key: str, path: str) -> int | None:
        """A length or item count keyword: None when absent, else a non-negative integer."""
        value = schema.get(key)
        if value is None:
            return None
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or value < 0:
            raise self.invalid(key, path, "a non-negative integer", value)
        return int(value)

    def visit(self, schema: Any, path: str, hint: str) -> str:
        """A GBNF expression (usually a rule name) for documents valid under `schema`."""
        if self._depth >= MAX_SCHEMA_DEPTH:
            raise InvalidRequestError(
                f"the JSON Schema nests deeper than {MAX_SCHEMA_DEPTH} levels at {path}",
                param=self.param,
            )
        self._depth += 1
        try:
            return self._visit(schema, path, hint)
        finally:
            self._depth -= 1

    def _visit(self, schema: Any, path: str, hint: str) -> str:
        if schema is True or schema == {}:
            return self.rules.json()
        if schema is False:
            raise self.fail("'false' (nothing is valid)", path)
        if not isinstance(schema, Mapping):
            raise InvalidRequestError(
                f"a JSON Schema must be an object or a boolean, got {type(schema).__name__} "
                f"at {path or 'the top level'}",
                param=self.param,
            )
        for key in schema:
            if key in UNSUPPORTED:
                raise self.fail(f"keyword '{key}'", path)
        if schema.get("uniqueItems") is True:
            raise self.fail("keyword 'uniqueItems'", path)
        if "$ref" in schema:
            rest = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
            if not rest:
                return self._ref(schema["$ref"], path)
            return self.visit(self._merge([{"$ref": schema["$ref"]}, rest], path), path, hint)
        if "allOf" in schema:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            parts = list(schema["allOf"]) + ([rest] if rest else [])
            return self.visit(self._merge(parts, f"{path}/allOf"), path, hint)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self._union(schema, key, path, hint)
        if "const" in schema:
            return self.rules.add(hint, literal(json.dumps(schema["const"])))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise self.fail("an empty 'enum'", path)
            return self.rules.add(hint, " | ".join(literal(json.dumps(v)) for v in values))
        kind = schema.get("type", _infer_type(schema))
        if isinstance(kind, list):
            if not kind:
                raise self.fail("an empty 'type' list", path)
            alts = [self._typed(t, schema, path, f"{hint}-{t}") for t in kind]
            return self.rules.add(hint, " | ".join(alts))
        if kind is None:
            return self.rules.json()
        return self._typed(kind, schema, path, hint)

    def _typed(self, kind: Any, schema: Mapping[str, Any], path: str, hint: str) -> str:
        if kind not in TYPES:
            raise self.fail(f"type {kind!r}", path)
        if kind == "object":
            return self._object(schema, path, hint)
        if kind == "array":
            return self._array(schema, path, hint)
        if kind == "string":
            return self._string(schema, path, hint)
        if kind == "integer":
            return self._integer(schema, path, hint)
        if kind == "number":
            for key in NUMBER_BOUNDS:
                if key in schema:
                    raise self.fail(f"keyword '{key}' on a number (only on an integer)", path)
            return self.rules.json("json-number")
        return self.rules.json("json-bool" if kind == "boolean" else "json-null")

    # -- references and combinators ---------------------------------------------------------

    def _ref(self, ref: Any, path: str) -> str:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.fail(f"$ref {ref!r} (only local references, '#/...')", path)
        if ref in self._refs:
            return self._refs[ref]
        target: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise InvalidRequestError(
                    f"$ref {ref!r} at {path or 'the top level'} points at nothing",
                    param=self.param,
                )
        name = self.rules.fresh("ref-" + (ref.rsplit("/", 1)[-1] or "root"))
        self._refs[ref] = name  # before visiting, so recursive schemas terminate
        self.rules.set(name, self.visit(target, ref[1:], name))
        return name

    def _resolve(self, schema: Any, path: str) -> Any:
        seen = set()
        while isinstance(schema, Mapping) and "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen or not isinstance(ref, str) or not ref.startswith("#"):
                raise self.fail(f"$ref {ref!r} inside allOf", path)
            seen.add(ref)
            target: Any = self.root
            for part in ref[1:].split("/")[1:] if ref != "#" else []:
                target = target.get(part) if isinstance(target, Mapping) else None
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra} if isinstance(target, Mapping) else target
        return schema

    def _merge(self, parts: list[Any], path: str) -> dict[str, Any]:
        """allOf as one schema: properties and required united, other keywords must agree."""
        merged: dict[str, Any] = {}
        for part in parts:
            part = self._resolve(part, path)
            if part is True:
                continue
            if not isinstance(part, Mapping):
                raise self.fail("an allOf member that is not an object", path)
            for key, value in part.items():
                if key in ANNOTATIONS:
                    continue
                if key == "properties":
                    props = merged.setdefault("properties", {})
                    for name, sub in value.items():
                        props[name] = {"allOf": [props[name], sub]} if name in props else sub
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                elif key in merged and merged[key] != value:
                    raise self.fail(f"allOf members that disagree on '{key}'", path)
                else:
                    merged[key] = value
        return merged

    def _union(self, schema: Mapping[str, Any], key: str, path: str, hint: str) -> str:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise self.fail(f"an empty '{key}'", path)
        rest = {k: v for k, v in schema.items() if k != key and k not in ANNOTATIONS}
        alts = []
        for i, branch in enumerate(branches):
            sub = self._merge([rest, branch], f"{path}/{key}/{i}") if rest else branch
            alts.append(self.visit(sub, f"{path}/{key}/{i}", f"{hint}-{i}"))
        return self.rules.add(hint, " | ".join(alts))

    # -- types ------------------------------------------------------------------------------

    def _object(self, schema: Mapping[str, Any], path: str, hint: str) -> str:
        props: dict[str, Any] = dict(schema.get("properties") or {})
        required = list(schema.get("required") or [])
        # Declared properties only, unless more are asked for; a bare object takes any keys.
        # An explicit empty `properties` declares none: small models otherwise invent keys for
        # a tool without arguments until the token budget cuts the JSON off.
        extra = schema.get("additionalProperties", not ("properties" in schema or required))
        for name in required:
            if name not in props:
                if schema.get("additionalProperties") is False:
                    raise self.fail(f"required property {name!r} that cannot exist", path)
                props[name] = extra if isinstance(extra, Mapping) else True
        if not props and extra is True:
            return self.rules.json("json-object")
        ws = self.rules.json("ws")
        kvs: list[tuple[str, bool]] = []
        for name, sub in props.items():
            value = self.visit(sub, f"{path}/properties/{name}", f"{hint}-{name}")
            kv = self.rules.add(
                f"{hint}-{name}-kv", f'{literal(json.dumps(name))} {ws} ":" {ws} {value} {ws}'
            )
            kvs.append((kv, name in required))
        more = None
        if extra is not False:
            value = self.visit(extra, f"{path}/additionalProperties", f"{hint}-extra")
            more = self.rules.add(
                f"{hint}-extra-kv", f'{self.rules.json("json-string")} {ws} ":" {ws} {value} {ws}'
            )
        return self.rules.add(hint, f'"{{" {ws} {self._members(kvs, more, hint)} "}}"')

    def _members(self, kvs: list[tuple[str, bool]], more: str | None, hint: str) -> str:
        # Built back to front. after: the rest when a member is already written (so each
        # starts with a comma); first: the rest when none is written yet.
        ws = self.rules.json("ws")
        after = f'( "," {ws} {more} )*' if more else ""
        first = f"( {more} {after} )?" if more else ""
        for kv, is_required in reversed(kvs):
            after_next = self.rules.add(f"{hint}-after", after) if after else ""
            if is_required:
                first = f"{kv} {after_next}".strip()
                after = f'"," {ws} {kv} {after_next}'.strip()
            else:
                first_next = self.rules.add(f"{hint}-first", first) if first else ""
                first = f"( {kv} {after_next} | {first_next} )"
                after = f'( "," {ws} {kv} )? {after_next}'.strip()
        return first

    def _array(self, schema: Mapping[str, Any], path: str, hint: str) -> str:
        ws = self.rules.json("ws")
        prefix = list(schema.get("prefixItems") or [])
        items = schema.get("items", True)
        if isinstance(items, list):  # the older tuple form
            prefix, items = items, schema.get("additionalItems", True)
        hi = self.count(schema, "maxItems", path)
        min_items = self.count(schema, "minItems", path)
        if items is False:
            if (min_items or 0) > len(prefix):
                raise self.fail("minItems beyond the prefixItems when 'items' is false", path)
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        # Without minItems a tuple is written whole: stricter than JSON Schema (which also takes
        # any beginning of it), never looser.
        lo = len(prefix) if hi is None else min(len(prefix), hi)
        if min_items is not None:
            lo = min_items
        if hi is not None and hi < lo:
            raise self.fail("maxItems below minItems", path)
        parts = [
            self.visit(s, f"{path}/prefixItems/{i}", f"{hint}-{i}") for i, s in enumerate(prefix)
        ]
        item = None
        if items is not False and (hi is None or hi > len(parts)):
            item = self.visit(items, f"{path}/items", f"{hint}-item")
            if not parts:
                parts = [item]  # the first item is written like a prefix item: no comma before it
        # Built back to front: `tail` is what may follow once i items are written (each then
        # starts with a comma). The array may end after any item from index lo on.
        tail = ""
        more_hi = None if hi is None else hi - len(parts)
        if item is not None and more_hi != 0:
            tail = f'( "," {ws} {item} {ws} ){_repeat(max(lo - len(parts), 0), more_hi)}'
        for i in reversed(range(len(parts) if hi is None else min(len(parts), hi))):
            comma = f'"," {ws} ' if i else ""
            body = f"{comma}{parts[i]} {ws} {tail}".rstrip()
            tail = body if i < lo else f"( {body} )?"
        return self.rules.add(hint, f'"[" {ws} {tail} "]"' if tail else f'"[" {ws} "]"')

    def _string(self, schema: Mapping[str, Any], path: str, hint: str) -> str:
        fmt = schema.get("format")
        if fmt is not None:
            if fmt not in FORMATS:
                raise self.fail(f"format {fmt!r}", path)
            return self.rules.add(hint, f'"\\"" {FORMATS[fmt]} "\\""')
        lo = self.count(schema, "minLength", path) or 0
        hi = self.count(schema, "maxLength", path)
        char = self.rules.json("json-char")
        if lo == 0 and hi is None:
            return self.rules.json("json-string")
        return self.rules.add(hint, f'"\\"" {char}{_repeat(lo, hi)} "\\""')

    def _integer(self, schema: Mapping[str, Any], path: str, hint: str) -> str:
        for key in NUMBER_BOUNDS:
            value = schema.get(key)
            if key not in schema or (key.startswith("exclusive") and isinstance(value, bool)):
                continue  # draft 4 writes exclusiveMinimum as a flag on minimum
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or abs(value) > MAX_BOUND  # before isfinite, which overflows on huge ints
                or not math.isfinite(value)
            ):
                raise self.invalid(key, path, "a number between -1e20 and 1e20", value)
        lo, hi = int_bounds(schema)
        if lo is None and hi is None:
            return self.rules.json("json-int")
        if lo is not None and hi is not None and lo > hi:
            raise self.fail("an integer range with no values", path)
        return self.rules.add(hint, int_range(lo, hi))


def _infer_type(schema: Mapping[str, Any]) -> str | None:
    keys = set(schema)
    if keys & {"properties", "required", "additionalProperties"}:
        return "object"
    if keys & {"items", "prefixItems", "minItems", "maxItems"}:
        return "array"
    if keys & {"minLength", "maxLength", "format"}:
        return "string"
    if keys & set(NUMBER_BOUNDS):
        return "number"
    return None


def _repeat(lo: int, hi: int | None) -> str:
    short = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((lo, hi))
    if short:
        return short
    return f"{{{lo},}}" if hi is None else f"{{{lo},{int(hi)}}}"


def schema_to_grammar(rules: RuleSet, schema: Any, *, param: str, hint: str = "schema") -> str:
    """Add rules for `schema` to `rules`; returns the rule matching a valid document."""
    try:
        return SchemaConverter(rules, schema, param=param).convert(hint)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        # A keyword of the wrong JSON type (properties as a list, allOf as a number): the
        # client's schema is malformed, which is a 400 and never a 500.
        raise InvalidRequestError(f"the JSON Schema is malformed: {exc}", param=param) from None

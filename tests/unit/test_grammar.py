"""JSON Schema to GBNF, judged by llama.cpp's own grammar engine: a document is accepted when
every token of it is allowed in turn and the end is allowed after the last."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import numpy as np
import pytest

from hearth.engine.base import SamplingParams
from hearth.engine.llamacpp.native import NativeModel
from hearth.engine.llamacpp.sampler import GrammarSampler, grammar_parses
from hearth.errors import InvalidRequestError
from hearth.grammar.gbnf import (
    MAX_GRAMMAR_CHARS,
    MAX_GRAMMAR_DEPTH,
    MAX_GRAMMAR_RULES,
    RuleSet,
    gbnf_problem,
    text_until,
    text_without,
)
from hearth.grammar.json_schema import MAX_SCHEMA_DEPTH, schema_to_grammar
from tests.unit.conftest import Accepts


def grammar_for(schema: Any) -> str:
    rules = RuleSet()
    return rules.render(schema_to_grammar(rules, schema, param="response_format"))


NESTED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["city"],
        },
        "nick": {"type": ["string", "null"]},
    },
    "required": ["name", "age", "role", "tags", "address"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "doc",
    [
        '{"name": "Al", "age": 30, "role": "admin", "tags": ["a", "b"], "address": {"city": "P"}}',
        '{"name":"Al","age":0,"role":"user","tags":[],"address":{"city":"P","zip":"1"},"nick":null}',
        '{ "name": "Al", "age": 130, "role": "guest", "tags": [ "x" ], '
        '"address": { "city": "x" }, "nick": "y" }',
    ],
)
def test_valid_documents_are_accepted(accepts: Accepts, doc: str) -> None:
    jsonschema.validate(json.loads(doc), NESTED)  # the test's own premise
    assert accepts(grammar_for(NESTED), doc)


@pytest.mark.parametrize(
    "doc",
    [
        '{"name": "Al", "age": 131, "role": "admin", "tags": [], "address": {"city": "P"}}',
        '{"name": "Al", "age": 30, "role": "root", "tags": [], "address": {"city": "P"}}',
        '{"name": "Al", "age": 30, "role": "user", "tags": ["a","b","c","d"], '
        '"address": {"city": "P"}}',
        '{"name": "Al", "age": 30, "role": "user", "tags": [], "address": {"zip": "1"}}',
        '{"name": "Al", "age": 30, "role": "user", "tags": [], "address": {"city": "P"}, "x": 1}',
        '{"name": "Al", "age": 30, "role": "user", "tags": []}',
        '{"name": "Al", "age": 30.5, "role": "user", "tags": [], "address": {"city": "P"}}',
    ],
)
def test_invalid_documents_are_refused(accepts: Accepts, doc: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(doc), NESTED)
    assert not accepts(grammar_for(NESTED), doc)


def test_integer_ranges_are_exact(accepts: Accepts) -> None:
    cases: list[tuple[dict[str, Any], range]] = [
        ({"minimum": -25, "maximum": 130}, range(-40, 150)),
        ({"exclusiveMinimum": 7, "exclusiveMaximum": 12}, range(0, 20)),
        ({"minimum": 95}, range(80, 1005, 7)),
        ({"maximum": -3}, range(-120, 5)),
    ]
    for bounds, values in cases:
        schema = {"type": "integer", **bounds}
        grammar = grammar_for(schema)
        for v in values:
            valid = jsonschema.Draft202012Validator(schema).is_valid(v)
            assert accepts(grammar, str(v)) == valid, (bounds, v)
        assert not accepts(grammar, "007")


def test_optional_properties_in_any_subset(accepts: Accepts) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
        "required": ["b"],
    }
    g = grammar_for(schema)
    for doc in [
        '{"b": true}',
        '{"a": 1, "b": false}',
        '{"b": true, "c": null}',
        '{"a": 2, "b": true, "c": null}',
    ]:
        assert accepts(g, doc), doc
    for doc in ["{}", '{"a": 1}', '{"b": true,}', '{"c": null, "b": true}']:
        assert not accepts(g, doc), doc


def test_refs_recursion_anyof_and_formats(accepts: Accepts) -> None:
    schema = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["id", "children"],
            }
        },
        "anyOf": [{"$ref": "#/$defs/node"}, {"type": "string", "format": "date"}],
    }
    g = grammar_for(schema)
    leaf = '{"id": "123e4567-e89b-12d3-a456-426614174000", "children": []}'
    assert accepts(g, f'{{"id": "123e4567-e89b-12d3-a456-426614174000", "children": [{leaf}]}}')
    assert accepts(g, '"2024-02-29"')
    assert not accepts(g, '"2024-13-01"')
    assert not accepts(g, '{"id": "nope", "children": []}')


def test_allof_merges_objects(accepts: Accepts) -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"const": 3}}, "required": ["b"]},
        ]
    }
    g = grammar_for(schema)
    assert accepts(g, '{"a": "x", "b": 3}')
    assert not accepts(g, '{"a": "x"}')


def test_json_is_compact(accepts: Accepts) -> None:
    # One optional space between tokens: small models wander in newlines and indentation.
    assert accepts(grammar_for({"type": "object"}), '{"a": [1, 2]}')
    assert not accepts(grammar_for({"type": "object"}), '{\n  "a": 1\n}')


def test_any_object_and_any_value(accepts: Accepts) -> None:
    assert accepts(grammar_for({"type": "object"}), '{"k": [1, {"z": null}], "s": "\\u00e9"}')
    assert accepts(grammar_for({}), '[true, 1.5e3, "x"]')
    assert not accepts(grammar_for({"type": "object"}), "[]")


def test_declared_empty_properties_is_the_empty_object(accepts: Accepts) -> None:
    # A tool without arguments (MCP servers declare `"properties": {}`) gets exactly `{}`.
    none = {"type": "object", "properties": {}}
    assert accepts(grammar_for(none), "{}")
    assert not accepts(grammar_for(none), '{"argument": "value"}')
    assert accepts(grammar_for({**none, "additionalProperties": True}), '{"a": 1}')


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "pattern": "^a+$"}, "pattern"),
        ({"type": "object", "properties": {"x": {"not": {"type": "null"}}}}, "not"),
        ({"type": "number", "minimum": 0}, "minimum"),
        ({"type": "string", "format": "email"}, "email"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"$ref": "https://example.com/schema.json"}, "$ref"),
        ({"type": "integer", "multipleOf": 5}, "multipleOf"),
    ],
)
def test_unsupported_features_are_named(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        grammar_for(schema)
    assert named in info.value.message
    assert info.value.param == "response_format"
    assert info.value.status_code == 400


def test_annotations_are_ignored(model: NativeModel) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "T",
        "description": "d",
        "type": "object",
        "properties": {"x": {"type": "integer", "description": "an x", "default": 1}},
        "examples": [{"x": 1}],
    }
    assert grammar_parses(model.vocab, grammar_for(schema))


def test_text_without_and_until(accepts: Accepts) -> None:
    rules = RuleSet()
    g = rules.render(f'{text_without(rules, "<tool_call>")} "!"')
    assert accepts(g, "a <tool <tool_ca <<tool_cal> x!")
    assert not accepts(g, "a <<tool_call> x!")
    rules = RuleSet()
    g = rules.render(f'{text_until(rules, "</think>")} "ok"')
    assert accepts(g, "some < / thoughts </thin</think>ok")
    assert not accepts(g, "a </think> b </think>ok")


def test_gbnf_problems_are_explained() -> None:
    assert gbnf_problem('root ::= "a" | b') == "rule 'b' is used on line 1 but never defined"
    assert gbnf_problem('x ::= "a"') == "the grammar has no 'root' rule"
    assert gbnf_problem('root ::= "a" [') == "unterminated character class on line 1"
    assert gbnf_problem('root ::= ( "a"') == "unbalanced '(' in the grammar"
    assert gbnf_problem('root ::= [a-z]{2,3} x # comment\nx ::= "\\""') is None


def nested_rules(rules: int, depth: int) -> str:
    """A chain of rules, each reaching the next through `depth` nested groups."""
    body = "".join(f"r{i} ::= {'(' * depth}r{i + 1}{')' * depth}\n" for i in range(rules))
    return f'root ::= r0\n{body}r{rules} ::= "a"\n'


def test_gbnf_bounds_keep_llamas_recursive_parser_safe(model: NativeModel) -> None:
    # llama.cpp recurses per group level and per rule on the way to a terminal; past the
    # bounds a grammar is refused before it: 20,000 nested groups overflow its stack.
    assert "nest deeper" in (gbnf_problem(nested_rules(1, 20_000)) or "")
    assert "nest deeper" in (gbnf_problem(nested_rules(1, MAX_GRAMMAR_DEPTH + 1)) or "")
    assert "more than" in (gbnf_problem(nested_rules(1800, MAX_GRAMMAR_DEPTH)) or "")
    assert "longer than" in (gbnf_problem("#" * (MAX_GRAMMAR_CHARS + 1)) or "")
    # The worst within the bounds: the deepest recursion llama.cpp can be asked for.
    rules = MAX_GRAMMAR_RULES // (MAX_GRAMMAR_DEPTH + 1)
    worst = nested_rules(rules, MAX_GRAMMAR_DEPTH)
    assert gbnf_problem(worst) is None
    assert grammar_parses(model.vocab, worst)


def chained_refs(n: int) -> dict[str, Any]:
    defs = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(n)}
    return {"$ref": "#/$defs/a0", "$defs": {**defs, f"a{n}": {"type": "string"}}}


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "integer", "minimum": float("inf")}, "'minimum'"),
        ({"type": "integer", "maximum": -float("inf")}, "'maximum'"),
        ({"type": "integer", "exclusiveMinimum": float("nan")}, "'exclusiveMinimum'"),
        ({"type": "integer", "minimum": 10**4000}, "'minimum'"),
        ({"type": "integer", "minimum": "0"}, "'minimum'"),
        ({"type": "integer", "maximum": None}, "'maximum'"),
        ({"type": "integer", "minimum": True}, "'minimum'"),
        ({"type": "string", "maxLength": float("inf")}, "'maxLength'"),
        ({"type": "string", "minLength": -5}, "'minLength'"),
        ({"type": "string", "minLength": 1.5}, "'minLength'"),
        ({"type": "string", "maxLength": "5"}, "'maxLength'"),
        ({"type": "array", "minItems": True}, "'minItems'"),
        ({"type": "array", "maxItems": [3]}, "'maxItems'"),
        ({"properties": [1, 2]}, "malformed"),
        ({"prefixItems": 5}, "malformed"),
        ({"allOf": 5}, "malformed"),
        (chained_refs(MAX_SCHEMA_DEPTH + 10), "deeper"),
    ],
)
def test_malformed_schemas_are_400s(schema: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        grammar_for(schema)
    assert words in info.value.message
    assert info.value.param == "response_format" and info.value.status_code == 400


def test_large_but_sane_schema_values(model: NativeModel) -> None:
    uint64 = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
    int64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
    for schema in (uint64, int64, {"type": "string", "maxLength": 3.0}, chained_refs(20)):
        assert grammar_parses(model.vocab, grammar_for(schema))


@pytest.mark.parametrize(
    "params",
    [SamplingParams(temperature=0.0), SamplingParams(top_k=5), SamplingParams(top_k=40)],
)
def test_shortlist_pick_equals_the_full_vocabulary_pick(
    model: NativeModel, params: SamplingParams
) -> None:
    from hearth.engine.llamacpp.sampler import build_chain, free_chain

    grammar = grammar_for({"type": "string"})  # many tokens allowed inside a string
    g = GrammarSampler(model.vocab, model.n_vocab, grammar, params)
    rng = np.random.default_rng(0)
    decided = 0
    try:
        for token in model.tokenize('"ab', add_special=False, parse_special=False):
            g.accept(token)
        for trial in range(30):
            logits = (rng.normal(size=model.n_vocab) * 3).astype(np.float32)
            short_chain = build_chain(params, model.n_vocab, trial)
            full_chain = build_chain(params, model.n_vocab, trial)
            try:
                short = g._narrow(short_chain, logits)
                full = g._pick(full_chain, logits, constrained=True)
            finally:
                free_chain(short_chain)
                free_chain(full_chain)
            assert full >= 0 and g.allows(full)
            if short >= 0:
                decided += 1
                assert short == full
    finally:
        g.free()
    assert decided > 0  # the shortlist did decide, and always as the full pass would


def arrays(pool: list[str], longest: int) -> list[str]:
    """Every array of up to `longest` values from `pool` (JSON texts)."""
    out = ["[]"]
    level: list[list[str]] = [[]]
    for _ in range(longest):
        level = [[*a, v] for a in level for v in pool]
        out += ["[" + ", ".join(a) + "]" for a in level]
    return out


POOL = ['"a"', "1", "true"]
STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}


@pytest.mark.parametrize(
    "schema",
    [
        {"prefixItems": [STR, INT], "items": BOOL, "minItems": 1, "maxItems": 4},
        {"prefixItems": [STR, INT], "items": False, "minItems": 1},
        {"prefixItems": [STR, INT, BOOL], "minItems": 0, "maxItems": 2},
        {"type": "array", "prefixItems": [STR, INT], "minItems": 3},
        {"prefixItems": [STR], "items": INT, "minItems": 0},
        {"items": INT, "minItems": 2, "maxItems": 3},
        {"$schema": "http://json-schema.org/draft-07/schema#", "items": [STR, INT],
         "additionalItems": BOOL, "minItems": 2, "maxItems": 3},
    ],
)  # fmt: skip
def test_prefix_items_with_min_and_max_items_are_exact(
    accepts: Accepts, schema: dict[str, Any]
) -> None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    grammar = grammar_for(schema)
    for doc in arrays(POOL, 5):
        assert accepts(grammar, doc) == validator.is_valid(json.loads(doc)), (schema, doc)


def test_a_tuple_without_min_items_is_written_whole(accepts: Accepts) -> None:
    # Stricter than JSON Schema (which takes any beginning of the tuple), never looser.
    schema = {"prefixItems": [STR, INT], "items": BOOL}
    validator = jsonschema.Draft202012Validator(schema)
    grammar = grammar_for(schema)
    for doc in arrays(POOL, 4):
        valid = validator.is_valid(json.loads(doc))
        taken = accepts(grammar, doc)
        assert valid or not taken, doc
        assert taken == (valid and doc.count(",") >= 1), doc


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"prefixItems": [STR], "items": False, "minItems": 2}, "minItems"),
        ({"prefixItems": [STR, INT], "minItems": 3, "maxItems": 2}, "maxItems"),
    ],
)
def test_arrays_with_no_valid_length_are_refused(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        grammar_for(schema)
    assert named in info.value.message
    assert info.value.status_code == 400

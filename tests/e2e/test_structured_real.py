"""Structured output and reasoning with the real starter model through the official client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.e2e.conftest import STARTER_ID, RunningServer

pytestmark = pytest.mark.e2e

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"type": "string", "enum": ["engineer", "artist", "doctor"]},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "country": {"type": "string", "maxLength": 20},
            },
            "required": ["city", "country"],
            "additionalProperties": False,
        },
        "skills": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "skill": {"type": "string", "maxLength": 20},
                    "level": {"enum": ["low", "mid", "high"]},
                },
                "required": ["skill", "level"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 3,
        },
        "nickname": {"type": ["string", "null"], "maxLength": 20},
    },
    "required": ["name", "age", "role", "address", "skills"],
    "additionalProperties": False,
}
DESCRIBE: list[Any] = [{"role": "user", "content": "Describe a fictional person as JSON."}]


@pytest.mark.timeout(600)  # twenty real generations; the box may be shared
def test_twenty_requests_against_a_nested_schema_all_validate(server: RunningServer) -> None:
    async def one(client: openai.AsyncOpenAI, seed: int) -> tuple[str | None, str]:
        r = await client.chat.completions.create(
            model=STARTER_ID,
            messages=DESCRIBE,
            seed=seed,
            max_tokens=400,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": PERSON, "strict": True},
            },
        )
        return r.choices[0].message.content, r.choices[0].finish_reason

    async def all_of_them() -> list[tuple[str | None, str]]:
        client = server.async_client()
        return await asyncio.gather(*(one(client, seed) for seed in range(20)))

    results = asyncio.run(all_of_them())
    assert len(results) == 20
    for content, reason in results:
        assert reason == "stop", content
        jsonschema.validate(json.loads(content or ""), PERSON)
    assert len({c for c, _ in results}) > 1  # sampled, not one canned answer


class Skill(BaseModel):
    skill: str = Field(max_length=20)
    level: Literal["low", "mid", "high"]


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=120)
    skills: list[Skill] = Field(max_length=3)


def test_parse_with_a_pydantic_model(server: RunningServer) -> None:
    r = server.client().chat.completions.parse(
        model=STARTER_ID, messages=DESCRIBE, response_format=Person, max_tokens=300
    )
    person = r.choices[0].message.parsed
    assert isinstance(person, Person)
    assert 0 <= person.age <= 120


def test_json_object_mode_and_streaming(server: RunningServer) -> None:
    client = server.client()
    ask = "Describe a cat as a JSON object with name and color."  # greedy output that ends
    args: dict[str, Any] = dict(
        model=STARTER_ID, messages=[{"role": "user", "content": ask}],
        response_format={"type": "json_object"}, max_tokens=150, temperature=0,
    )  # fmt: skip
    r = client.chat.completions.create(**args)
    assert r.choices[0].finish_reason == "stop"
    full = r.choices[0].message.content or ""
    assert isinstance(json.loads(full), dict)
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(**args, stream=True)
        if c.choices
    ]
    assert "".join(pieces) == full


def test_grammar_extension(server: RunningServer) -> None:
    client = server.client()
    for seed in range(3):
        r = client.chat.completions.create(
            model=STARTER_ID,
            messages=[{"role": "user", "content": "Is the sky blue?"}],
            seed=seed,
            max_tokens=10,
            extra_body={"grammar": 'root ::= ("yes" | "no") "."'},
        )
        assert r.choices[0].message.content in ("yes.", "no.")
        assert r.choices[0].finish_reason == "stop"


def test_grammar_on_completions(server: RunningServer) -> None:
    r = server.client().completions.create(
        model=STARTER_ID, prompt="Q: Is water wet?\nA:", max_tokens=5,
        extra_body={"grammar": 'root ::= " " ("yes" | "no")'},
    )  # fmt: skip
    assert r.choices[0].text in (" yes", " no")


def test_unsupported_schema_is_a_400_naming_it(server: RunningServer) -> None:
    schema = {"type": "object", "properties": {"zip": {"type": "string", "pattern": "^[0-9]+$"}}}
    with pytest.raises(openai.BadRequestError) as info:
        server.client().chat.completions.create(
            model=STARTER_ID,
            messages=DESCRIBE,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
        )
    assert "pattern" in info.value.message
    assert info.value.body["param"] == "response_format.json_schema.schema"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        server.client().chat.completions.create(
            model=STARTER_ID, messages=DESCRIBE, extra_body={"grammar": "root ::= nothing"}
        )
    assert "nothing" in info.value.message
    assert (
        server.client()
        .chat.completions.create(model=STARTER_ID, messages=DESCRIBE, max_tokens=3)
        .choices[0]
        .message.content
    )


# -- reasoning ---------------------------------------------------------------------------------

# A grammar makes the starter model write a think block the way reasoning models do.
THINKING = 'root ::= "<think>" [a-z ]{5,40} "</think>" [A-Za-z ]{1,30} "."'


def test_think_block_is_parsed_in_full_and_streamed_responses(server: RunningServer) -> None:
    client = server.client()
    args: dict[str, Any] = dict(
        model=STARTER_ID, messages=DESCRIBE, temperature=0, max_tokens=60,
        extra_body={"grammar": THINKING},
    )  # fmt: skip
    full = client.chat.completions.create(**args).choices[0].message
    extra = full.model_extra or {}
    assert extra["reasoning_content"] and extra["reasoning"] == extra["reasoning_content"]
    assert full.content and full.content.endswith(".")
    assert "<think>" not in full.content and "</think>" not in full.content
    reasoning, content = [], []
    for chunk in client.chat.completions.create(**args, stream=True):
        for choice in chunk.choices:
            delta = choice.delta.model_extra or {}
            reasoning.append(delta.get("reasoning_content") or "")
            content.append(choice.delta.content or "")
    assert "".join(reasoning) == extra["reasoning_content"]
    assert "".join(content) == full.content
    args["extra_body"]["reasoning_format"] = "raw"
    raw = client.chat.completions.create(**args).choices[0].message.content or ""
    assert raw.startswith("<think>") and "</think>" in raw


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}<|im_start|>assistant\n"
)
OPEN_THINK_TEMPLATE = (
    CHATML
    + "{% if enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
)


def test_block_opened_by_the_template_and_cut_by_max_tokens(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    template = tmp_path / "thinking.jinja"
    template.write_text(OPEN_THINK_TEMPLATE)
    server = server_factory("--chat-template-file", str(template))
    client = server.client()
    r = client.chat.completions.create(model=STARTER_ID, messages=DESCRIBE, max_tokens=8)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "length"
    assert (message.model_extra or {}).get("reasoning_content")
    assert not message.content
    off = client.chat.completions.create(
        model=STARTER_ID, messages=DESCRIBE, max_tokens=8,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )  # fmt: skip
    assert off.choices[0].message.content
    assert not (off.choices[0].message.model_extra or {}).get("reasoning_content")
    assert off.usage and r.usage and off.usage.prompt_tokens > r.usage.prompt_tokens


def test_server_flag_keeps_reasoning_raw(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("--reasoning-format", "raw")
    r = server.client().chat.completions.create(
        model=STARTER_ID, messages=DESCRIBE, temperature=0, max_tokens=60,
        extra_body={"grammar": THINKING},
    )  # fmt: skip
    assert (r.choices[0].message.content or "").startswith("<think>")
    assert not (r.choices[0].message.model_extra or {}).get("reasoning_content")


# As gpt-oss's template does: the effort goes into the system message, and only the levels it
# knows are accepted.
EFFORT_TEMPLATE = (
    "{% if reasoning_effort is defined %}"
    "{% if reasoning_effort not in ['low', 'medium', 'high'] %}"
    "{{ raise_exception('unknown reasoning effort ' ~ reasoning_effort) }}{% endif %}"
    "<|im_start|>system\nReasoning: {{ reasoning_effort }}<|im_end|>\n{% endif %}" + CHATML
)


def test_reasoning_effort_reaches_the_template(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    template = tmp_path / "effort.jinja"
    template.write_text(EFFORT_TEMPLATE)
    client = server_factory("--chat-template-file", str(template)).client()
    ask: Any = dict(model=STARTER_ID, messages=DESCRIBE, max_tokens=1)
    plain = client.chat.completions.create(**ask)
    high = client.chat.completions.create(**ask, reasoning_effort="high")
    assert plain.usage and high.usage and high.usage.prompt_tokens > plain.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**ask, extra_body={"reasoning_effort": "extreme"})
    assert "unknown reasoning effort extreme" in info.value.message

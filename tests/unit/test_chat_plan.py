"""Requests made concrete per template: tools reach the template as Hugging Face templates
expect, and for every format the call grammar and the call parser agree (the grammar, judged
by llama.cpp, accepts the format's canonical calls; the parser reads them back)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hearth.api.chat.protocol import ChatCompletionRequest
from hearth.api.chat.translate import conversation
from hearth.chat.output import MessageParts
from hearth.chat.template import ChatTemplate
from hearth.pipeline.plan import build_plan
from hearth.pipeline.request import ConversationRequest
from tests.unit.conftest import Accepts

LOOP = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
GEN = "<|im_start|>assistant\n"
TEMPLATES = {
    "hermes": LOOP + "{% if tools %}<tools>{{ tools | tojson }}</tools> use <tool_call>"
    "{% endif %}" + GEN,
    "injected": LOOP + GEN,
    "llama3": "<|start_header_id|>" + LOOP + '{% if tools %}{"name": f, "parameters": {}}'
    "{% endif %}" + GEN,
    "mistral": "{% if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]"
    "{% endif %}[TOOL_CALLS]" + LOOP + GEN,
    "mistral-args": "{% if tools %}{{ tools | tojson }}{% endif %}[TOOL_CALLS]x[ARGS]" + LOOP + GEN,
    "generic": "{% if tools %}Tools: {{ tools | tojson }}{% endif %}" + LOOP + GEN,
}
CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
CANONICAL = {
    "hermes": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    '\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>',
    "injected": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '</tool_call><tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>',
    "llama3": '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
    '{"name": "get_time", "parameters": {"tz": "CET"}}',
    "mistral": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_time", "arguments": {"tz": "CET"}}]',
    "mistral-args": '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
    '[TOOL_CALLS]get_time[ARGS]{"tz": "CET"}',
    "generic": '[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
    '{"name": "get_time", "arguments": {"tz": "CET"}}]',
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"],
            },
        },
    },
]


def request(**fields: Any) -> ConversationRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "Weather?"}], **fields}
    return conversation(ChatCompletionRequest.model_validate(body))


def template(source: str | None) -> ChatTemplate:
    return ChatTemplate(source, bos_token="", eos_token="")


def parse(plan_parser: Any, text: str) -> MessageParts:
    parts = MessageParts()
    for ch in text:
        parts.add(plan_parser.feed(ch))
    parts.add(plan_parser.finish())
    return parts


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_grammar_and_parser_agree_for_every_format(accepts: Accepts, name: str) -> None:
    plan = build_plan(
        request(tools=TOOLS, tool_choice="required"), template(TEMPLATES[name]), "parsed"
    )
    assert plan.tool_format is not None
    assert plan.grammar is not None
    text = CANONICAL[name]
    assert accepts(plan.grammar, text)
    assert not accepts(plan.grammar, "It is sunny in Paris.")
    parts = parse(plan.parser(), text)
    got = [(c.name, json.loads("".join(c.arguments))) for c in parts.tool_calls]
    assert got == CALLS
    assert "".join(parts.content) == ""


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_named_choice_allows_that_function_once(accepts: Accepts, name: str) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    plan = build_plan(request(tools=TOOLS, tool_choice=choice), template(TEMPLATES[name]), "parsed")
    assert plan.grammar is not None
    assert not accepts(plan.grammar, CANONICAL[name])  # two calls, one of another function
    one = {
        "hermes": '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>',
        "llama3": '{"name": "get_time", "parameters": {"tz": "CET"}}',
        "mistral": '[TOOL_CALLS][{"name": "get_time", "arguments": {"tz": "CET"}}]',
        "mistral-args": '[TOOL_CALLS]get_time[ARGS]{"tz": "CET"}',
        "generic": '{"name": "get_time", "arguments": {"tz": "CET"}}',
    }
    assert accepts(plan.grammar, one["hermes" if name == "injected" else name])


def test_auto_allows_text_then_valid_calls(accepts: Accepts) -> None:
    plan = build_plan(request(tools=TOOLS), template(None), "parsed")
    assert plan.grammar is not None
    assert accepts(plan.grammar, "It is sunny in <b>Paris</b>.")
    assert accepts(plan.grammar, "Let me check." + CANONICAL["injected"])
    assert not accepts(plan.grammar, 'Let me check.<tool_call>\n{"name": "nope", "arguments": {}}')
    assert plan.markers[-2:] == ["<tool_call>", "</tool_call>"]


def test_native_template_gets_tools_and_object_arguments() -> None:
    source = (
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}"
        "{% for m in messages %}{% if m.tool_calls %}"
        "{{ m.tool_calls[0].function.arguments.city }}{% endif %}"
        "{% if m.role == 'tool' %}({{ m.tool_call_id }}:{{ m.content }}){% endif %}"
        "{% endfor %}"
    )
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    plan = build_plan(request(messages=messages, tools=TOOLS), template(source), "parsed")
    assert plan.prompt == "[get_weather][get_time]Paris(c1:sunny)"


def test_thinking_templates_may_think_before_the_grammar(accepts: Accepts) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    thinks = LOOP + "{% if false %}</think>{% endif %}" + GEN
    plan = build_plan(request(response_format=fmt), template(thinks), "parsed")
    assert plan.grammar is not None
    assert accepts(plan.grammar, '{"a": 1}')
    assert accepts(plan.grammar, '<think>a < b, so</think> {"a": 1}')
    assert not accepts(plan.grammar, 'so</think> {"a": 1}')
    opened = build_plan(request(response_format=fmt), template(thinks + "<think>\n"), "parsed")
    assert opened.reasoning_opened and opened.grammar is not None
    assert accepts(opened.grammar, 'so</think> {"a": 1}')
    parts = parse(opened.parser(), 'so</think> {"a": 1}')
    assert ("".join(parts.reasoning), "".join(parts.content)) == ("so", '{"a": 1}')


def test_raw_reasoning_gives_back_the_opening_marker() -> None:
    opened = LOOP + "{% if false %}</think>{% endif %}" + GEN + "<think>\n"
    plan = build_plan(request(), template(opened), "raw")
    parts = parse(plan.parser(), "hmm</think>ok")
    assert "".join(parts.content) == "<think>hmm</think>ok"
    assert parts.reasoning == []


HARMONY_TEMPLATE = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort or 'medium' }}<|end|>"
    "{%- for m in messages %}{% if m.role == 'assistant' %}"
    "<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>"
    "{% else %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}"
    "{%- endfor %}<|start|>assistant"
)


def test_harmony_channels_with_and_without_a_grammar(accepts: Accepts) -> None:
    plan = build_plan(request(reasoning_effort="high"), template(HARMONY_TEMPLATE), "parsed")
    assert "Reasoning: high" in plan.prompt
    assert {"<|start|>", "<|channel|>", "<|message|>", "<|end|>"} <= set(plan.markers)
    answer = "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final"
    parts = parse(plan.parser(), answer + "<|message|>Hi!")
    assert ("".join(parts.reasoning), "".join(parts.content)) == ("Easy.", "Hi!")

    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    plan = build_plan(request(response_format=fmt), template(HARMONY_TEMPLATE), "parsed")
    assert plan.grammar is not None
    # The JSON is the final channel's message, after an optional analysis.
    assert accepts(plan.grammar, answer + '<|message|>{"a": 1}')
    assert accepts(plan.grammar, '<|channel|>final<|message|>{"a": 1}')
    assert not accepts(plan.grammar, '{"a": 1}')
    assert not accepts(plan.grammar, '<|channel|>analysis<|message|>x<|end|>{"a": 1}')
    parts = parse(plan.parser(), answer + '<|message|>{"a": 1}')
    assert ("".join(parts.reasoning), "".join(parts.content)) == ("Easy.", '{"a": 1}')

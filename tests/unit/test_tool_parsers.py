"""Tool-call extraction on recorded outputs, written from each format's documentation, fed
whole, one character at a time and in uneven chunks: the result must not depend on how the
text was split into tokens."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from hearth.chat.output import MessageParts, OutputParser
from hearth.chat.pieces import Piece, ToolCallArgs, ToolCallStart
from hearth.chat.reasoning import THINK, ReasoningParser
from hearth.chat.tool_parser import HermesParser, JsonStartParser, MistralParser, ToolParser
from hearth.chat.tools import ToolFormat, detect_tool_format, mistral_call_id, openai_call_id

Split = Callable[[str], list[str]]


def whole(text: str) -> list[str]:
    return [text]


def chars(text: str) -> list[str]:
    return list(text)


def uneven(text: str) -> list[str]:
    sizes = itertools.cycle([3, 1, 7, 2, 5])
    out, i = [], 0
    while i < len(text):
        n = next(sizes)
        out.append(text[i : i + n])
        i += n
    return out


SPLITS = [whole, chars, uneven]


@dataclass
class Result:
    content: str
    calls: list[tuple[str, object]]  # (name, parsed arguments)
    pieces: list[Piece] = field(default_factory=list)


def feed_all(parser: OutputParser, text: str, split: Split) -> list[Piece]:
    pieces: list[Piece] = []
    for part in split(text):
        pieces += parser.feed(part)
    return pieces + parser.finish()


def run(make: Callable[[], ToolParser], text: str, split: Split) -> Result:
    pieces = feed_all(OutputParser(tools=make()), text, split)
    parts = MessageParts()
    parts.add(pieces)
    calls = [(c.name, json.loads("".join(c.arguments))) for c in parts.tool_calls]
    return Result("".join(parts.content), calls, pieces)


def ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def hermes() -> ToolParser:
    return HermesParser(ids())


def mistral() -> ToolParser:
    return MistralParser(ids())


def json_start() -> ToolParser:
    return JsonStartParser(ids())


# Qwen 2.5 function-calling guide: two calls, one block each.
QWEN_TWO_CALLS = (
    '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": '
    '"San Francisco, CA, USA"}}\n</tool_call>\n<tool_call>\n{"name": "get_temperature_date", '
    '"arguments": {"location": "San Francisco, CA, USA", "date": "2024-10-01"}}\n</tool_call>'
)
QWEN_CALLS = [
    ("get_current_temperature", {"location": "San Francisco, CA, USA"}),
    ("get_temperature_date", {"location": "San Francisco, CA, USA", "date": "2024-10-01"}),
]


@pytest.mark.parametrize("split", SPLITS)
def test_hermes_two_calls(split: Split) -> None:
    r = run(hermes, QWEN_TWO_CALLS, split)
    assert r.content == ""
    assert r.calls == QWEN_CALLS


@pytest.mark.parametrize("split", SPLITS)
def test_hermes_text_before_a_call_stays_content_without_markup(split: Split) -> None:
    text = (
        'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"x": [1, {"y": "}"}]}}'
        "\n</tool_call>"
    )
    r = run(hermes, text, split)
    assert r.content == "Let me check.\n"
    assert r.calls == [("f", {"x": [1, {"y": "}"}]})]


@pytest.mark.parametrize("split", SPLITS)
def test_hermes_json_array_in_one_block_and_string_arguments(split: Split) -> None:
    # SmolLM2's tuning data puts a JSON array in one block; some models quote the arguments.
    text = (
        '<tool_call>[{"name": "a", "arguments": {}}, '
        '{"arguments": "{\\"q\\": 1}", "name": "b"}]</tool_call>'
    )
    assert run(hermes, text, split).calls == [("a", {}), ("b", {"q": 1})]


@pytest.mark.parametrize("split", SPLITS)
def test_hermes_lookalikes_stay_content(split: Split) -> None:
    assert (
        run(hermes, "Use <tool and <tool_ca tags", split).content == "Use <tool and <tool_ca tags"
    )
    broken = "<tool_call>not json</tool_call> after"
    r = run(hermes, broken, split)
    assert r.calls == []
    assert r.content == broken  # the model broke the format: nothing is lost


@pytest.mark.parametrize("split", SPLITS)
def test_hermes_block_cut_off_is_dropped(split: Split) -> None:
    r = run(hermes, 'Sure.<tool_call>\n{"na', split)
    assert r.content == "Sure."
    assert r.calls == []


@pytest.mark.parametrize("split", SPLITS)
def test_mistral_json_array(split: Split) -> None:
    # Mistral 7B v0.3 / Small: [TOOL_CALLS] then a JSON array, ids sometimes included.
    text = (
        '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, '
        'France", "format": "celsius"}, "id": "a1b2c3d4e"}]'
    )
    r = run(mistral, text, split)
    assert r.content == ""
    assert r.calls == [("get_current_weather", {"location": "Paris, France", "format": "celsius"})]


@pytest.mark.parametrize("split", SPLITS)
def test_mistral_name_args_form(split: Split) -> None:
    # v11 templates (Mistral Small 3.2, Devstral): [TOOL_CALLS]name[ARGS]{...} per call.
    text = (
        '[TOOL_CALLS]get_current_weather[ARGS]{"location": "Paris"}'
        '[TOOL_CALLS]get_time[CALL_ID]123456789[ARGS]{"tz": "CET"}'
    )
    r = run(mistral, text, split)
    assert r.calls == [("get_current_weather", {"location": "Paris"}), ("get_time", {"tz": "CET"})]
    assert r.content == ""


@pytest.mark.parametrize("split", SPLITS)
def test_llama3_json_with_parameters(split: Split) -> None:
    # Llama 3.1 model card: a JSON object with "name" and "parameters" as the whole reply.
    text = (
        '{"name": "get_current_conditions", "parameters": '
        '{"location": "San Francisco, CA", "unit": "Fahrenheit"}}'
    )
    r = run(json_start, text, split)
    assert r.calls == [
        ("get_current_conditions", {"location": "San Francisco, CA", "unit": "Fahrenheit"})
    ]
    tagged = '<|python_tag|>{"name": "a", "parameters": {"k": 1}}; {"name": "b", "parameters": {}}'
    assert run(json_start, tagged, split).calls == [("a", {"k": 1}), ("b", {})]


@pytest.mark.parametrize("split", SPLITS)
def test_generic_json_object_and_array(split: Split) -> None:
    assert run(json_start, ' {"name": "f", "arguments": {"x": 1}}', split).calls == [
        ("f", {"x": 1})
    ]
    text = '[{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {}}]'
    assert run(json_start, text, split).calls == [("f", {"x": 1}), ("g", {})]


@pytest.mark.parametrize("split", SPLITS)
def test_json_start_leaves_other_replies_alone(split: Split) -> None:
    for text in ['{"answer": 42}', "Plain words.", "[1, 2]", "<b>bold</b>"]:
        r = run(json_start, text, split)
        assert (r.content, r.calls) == (text, [])


def test_stream_order_start_then_argument_pieces() -> None:
    r = run(hermes, QWEN_TWO_CALLS, chars)
    calls = [p for p in r.pieces if isinstance(p, ToolCallStart | ToolCallArgs)]
    assert isinstance(calls[0], ToolCallStart) and calls[0].index == 0
    second = next(i for i, p in enumerate(calls) if isinstance(p, ToolCallStart) and p.index == 1)
    assert all(isinstance(p, ToolCallArgs) and p.index == 0 for p in calls[1:second])
    assert len(calls[1:second]) > 5  # arguments streamed in many pieces, not at the end
    starts = [p for p in calls if isinstance(p, ToolCallStart)]
    assert len({p.id for p in starts}) == 2


def test_arguments_before_the_name_wait_for_it() -> None:
    text = '<tool_call>{"arguments": {"x": 1}, "name": "f"}</tool_call>'
    r = run(hermes, text, chars)
    first = next(p for p in r.pieces if isinstance(p, ToolCallStart | ToolCallArgs))
    assert isinstance(first, ToolCallStart)
    assert r.calls == [("f", {"x": 1})]


def test_parallel_false_keeps_the_first_call() -> None:
    parts = MessageParts()
    parts.add(feed_all(OutputParser(tools=hermes(), parallel=False), QWEN_TWO_CALLS, whole))
    assert [c.name for c in parts.tool_calls] == ["get_current_temperature"]


@pytest.mark.parametrize("split", SPLITS)
def test_reasoning_then_tool_call(split: Split) -> None:
    # Qwen3: a think block, then a call.
    text = (
        "<think>\nThe user wants weather.\n</think>\n\n"
        '<tool_call>\n{"name": "w", "arguments": {"c": "Paris"}}\n</tool_call>'
    )
    parts = MessageParts()
    parts.add(feed_all(OutputParser(ReasoningParser(THINK), hermes()), text, split))
    assert "".join(parts.reasoning) == "The user wants weather."
    assert "".join(parts.content) == ""
    assert [(c.name, "".join(c.arguments)) for c in parts.tool_calls] == [("w", '{"c": "Paris"}')]


def test_format_detection_from_templates() -> None:
    qwen = "{% for tool in tools %}{{ tool | tojson }}{% endfor %}<tool_call>\n"
    assert detect_tool_format(qwen) == ToolFormat("hermes", native=True)
    llama = '{% if tools %}<|start_header_id|>{"name": ..., "parameters": ...}<|python_tag|>'
    assert detect_tool_format(llama).name == "llama3"
    mistral_v3 = "{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]"
    assert detect_tool_format(mistral_v3) == ToolFormat("mistral", native=True)
    mistral_v11 = "{% if tools %}[TOOL_CALLS]{{ name }}[ARGS]{% endif %}"
    assert detect_tool_format(mistral_v11).mistral_args
    assert detect_tool_format("{% if tools %}{{ tools }}{% endif %}").name == "generic"
    chatml = "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"
    assert detect_tool_format(chatml) == ToolFormat("hermes", native=False)


def test_call_ids() -> None:
    assert openai_call_id().startswith("call_") and openai_call_id() != openai_call_id()
    mid = mistral_call_id()
    assert len(mid) == 9 and mid.isalnum()

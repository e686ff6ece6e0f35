"""The conversation pipeline itself, under every dialect: the neutral events (pieces, tool-call
ends, finish reasons with the stop string, usage, timings), the aggregate built from them, and
how a failure mid-stream ends the open choices. Fake engine; tests/e2e runs the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from hearth.chat.pieces import Content, ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.errors import EngineCrashed, InvalidRequestError
from hearth.pipeline.events import Done, Event, Finished, Output, Progress
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.request import ConversationRequest, Message, Tool
from hearth.pipeline.run import Pipeline
from tests.api.conftest import FAKE_ID
from tests.fakes import FakeEngine

pytestmark = pytest.mark.anyio

WEATHER = Tool("get_weather", parameters={"type": "object"}, param="tools.0.function.parameters")
TWO_CALLS = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
)


async def _events(prepared: Prepared, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    async for event in events:
        yield event


async def run(app: FastAPI, request: ConversationRequest) -> list[Event]:
    pipeline: Pipeline = app.state.runtime.pipeline
    return [e async for e in await pipeline.stream(request, _events)]


def engine(app: FastAPI) -> FakeEngine:
    return app.state.runtime.models._loaded[FAKE_ID].engine  # type: ignore[no-any-return]


def ask(text: str = "hi", **fields: Any) -> ConversationRequest:
    return ConversationRequest(model=FAKE_ID, messages=[Message("user", text)], **fields)


async def test_a_stop_string_is_named_in_the_finish_and_timings_add_up(app: FastAPI) -> None:
    events = await run(app, ask(stop=["gamma"], max_tokens=8))
    assert isinstance(events[0], Progress)
    text = "".join(p.text for e in events if isinstance(e, Output) for p in e.pieces)  # type: ignore[union-attr]
    assert text == "alpha beta "
    finished = [e for e in events if isinstance(e, Finished)]
    assert [(f.reason, f.stop_sequence) for f in finished] == [("stop", "gamma")]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage.completion_tokens == 3 and done.usage.prompt_tokens > 0
    # The first request loaded the model: its time is load_ns, not the prompt's.
    assert done.timings.load_ns > 0 and done.timings.generation_ns > 0
    assert done.timings.prompt_ns >= 0
    events = await run(app, ask(max_tokens=2))
    assert [(e.reason, e.stop_sequence) for e in events if isinstance(e, Finished)] == [
        ("length", None)
    ]


async def test_tool_calls_start_stream_their_arguments_and_end(app: FastAPI) -> None:
    await run(app, ask(max_tokens=1))  # loads the model, so its fake can be scripted
    engine(app).replies.append("Checking." + TWO_CALLS)
    events = await run(app, ask(tools=[WEATHER], n=1))
    pieces = [p for e in events if isinstance(e, Output) for p in e.pieces]
    calls = [p for p in pieces if isinstance(p, ToolCallStart | ToolCallEnd)]
    assert [(type(p).__name__, p.index) for p in calls] == [
        ("ToolCallStart", 0),
        ("ToolCallEnd", 0),
        ("ToolCallStart", 1),
        ("ToolCallEnd", 1),
    ]
    # Every argument piece sits between its call's start and end.
    open_call = None
    for p in pieces:
        if isinstance(p, ToolCallStart):
            open_call = p.index
        elif isinstance(p, ToolCallArgs):
            assert p.index == open_call
        elif isinstance(p, ToolCallEnd):
            open_call = None
    assert "".join(p.text for p in pieces if isinstance(p, Content)) == "Checking."
    assert [e.reason for e in events if isinstance(e, Finished)] == ["tool_calls"]


async def test_the_aggregate_is_the_stream_gathered(app: FastAPI) -> None:
    pipeline: Pipeline = app.state.runtime.pipeline
    request = ask(max_tokens=5, n=3)
    events = await run(app, request)
    streamed = ["", "", ""]
    for e in events:
        if isinstance(e, Output):
            streamed[e.index] += "".join(p.text for p in e.pieces)  # type: ignore[union-attr]
    _, result = await pipeline.complete(request)
    assert [c.text for c in result.choices] == streamed
    assert [c.finish.reason for c in result.choices if c.finish] == ["length"] * 3
    assert result.usage.completion_tokens == 15


async def test_raw_prompts_are_one_generation_each(app: FastAPI) -> None:
    pipeline: Pipeline = app.state.runtime.pipeline
    request = ConversationRequest(model=FAKE_ID, prompts=["one", [1, 2]], n=2, max_tokens=2)
    prepared, result = await pipeline.complete(request)
    assert prepared.plan is None and len(prepared.generations) == 2
    assert prepared.prompt_texts == ["one", "beta gamma"]
    assert len(result.choices) == 4
    with pytest.raises(InvalidRequestError) as err:
        await pipeline.complete(ConversationRequest(model=FAKE_ID, prompts=[[1, 10**6]]))
    assert err.value.param == "prompt" and "in prompt 0" in err.value.message


async def test_a_failure_mid_stream_finishes_open_choices_then_raises(app: FastAPI) -> None:
    await run(app, ask(max_tokens=1))
    engine(app).fail_with = EngineCrashed("the engine died")
    pipeline: Pipeline = app.state.runtime.pipeline
    seen: list[Event] = []
    with pytest.raises(EngineCrashed):
        async for event in await pipeline.stream(ask(max_tokens=8, n=2), _events):
            seen.append(event)
    assert [(e.index, e.reason) for e in seen if isinstance(e, Finished)] == [
        (0, "error"),
        (1, "error"),
    ]
    assert not any(isinstance(e, Done) for e in seen)


async def test_an_invalid_tool_schema_names_the_dialects_field(app: FastAPI) -> None:
    bad = Tool("f", parameters={"type": "object", "not": {}}, param="tools.3.input_schema")
    pipeline: Pipeline = app.state.runtime.pipeline
    with pytest.raises(InvalidRequestError) as err:
        await pipeline.complete(ask(tools=[bad], tool_choice="required"))
    assert err.value.param == "tools.3.input_schema"

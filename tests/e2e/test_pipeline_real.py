"""The conversation pipeline on the real starter model, through the library: the neutral
events every dialect renders (a stop string named in the finish, a tool call's start,
arguments and end, usage and timings)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hearth import Hearth
from hearth.chat.pieces import ToolCallArgs, ToolCallEnd, ToolCallStart
from hearth.pipeline.events import Done, Event, Finished, Output
from hearth.pipeline.prepare import Prepared
from hearth.pipeline.request import ConversationRequest, Message, Sampling, Tool
from tests.e2e.conftest import STARTER_ID

pytestmark = pytest.mark.e2e

GREEDY = Sampling(temperature=0)
WEATHER = Tool(
    "get_weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


async def _as_is(prepared: Prepared, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
    async for event in events:
        yield event


def test_neutral_events_on_the_real_model(starter_model: Path, tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "c.toml").touch()
        async with Hearth(
            models_dir=tmp_path, model=[str(starter_model)], config=tmp_path / "c.toml"
        ) as h:
            pipeline = h.runtime.pipeline
            count = ConversationRequest(
                model=STARTER_ID, prompts=["1, 2, 3, 4,"], max_tokens=12, sampling=GREEDY
            )
            _, free = await pipeline.complete(count)
            assert free.choices[0].finish is not None
            assert free.choices[0].finish.reason == "length"
            assert " 7" in free.choices[0].text  # greedy: it counts on
            count.stop = [" 7"]
            _, stopped = await pipeline.complete(count)
            finish = stopped.choices[0].finish
            assert finish is not None and (finish.reason, finish.stop_sequence) == ("stop", " 7")
            assert stopped.choices[0].text == free.choices[0].text.split(" 7")[0]
            assert stopped.timings.prompt_ns > 0 and stopped.timings.generation_ns > 0

            ask = ConversationRequest(
                model=STARTER_ID,
                messages=[Message("user", "What is the weather in Paris?")],
                tools=[WEATHER],
                tool_choice="required",
                max_tokens=64,
                sampling=GREEDY,
            )
            events = [e async for e in await pipeline.stream(ask, _as_is)]
            pieces = [p for e in events if isinstance(e, Output) for p in e.pieces]
            kinds = [type(p) for p in pieces if not isinstance(p, ToolCallArgs)]
            assert kinds == [ToolCallStart, ToolCallEnd]
            args = "".join(p.text for p in pieces if isinstance(p, ToolCallArgs))
            assert isinstance(json.loads(args)["city"], str)
            assert [e.reason for e in events if isinstance(e, Finished)] == ["tool_calls"]
            done = events[-1]
            assert isinstance(done, Done)
            assert done.usage.prompt_tokens > 0
            assert done.usage.completion_tokens == sum(
                e.completion_tokens for e in events if isinstance(e, Finished)
            )

    asyncio.run(main())

"""The in-process library on the real starter model: same objects as the wire, no HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth import Hearth
from hearth.api.anthropic.protocol import Message as AnthropicMessage
from hearth.api.chat.protocol import ChatCompletion, ChatCompletionChunk
from hearth.api.ollama.protocol import ChatResponse
from hearth.api.responses.protocol import Response
from hearth.errors import ModelNotFound
from tests.e2e.conftest import STARTER_ID

pytestmark = pytest.mark.e2e
TERMINAL = ("response.completed", "response.incomplete")


def test_library_chat_and_stream(starter_model: Path, tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "c.toml").touch()
        async with Hearth(
            models_dir=tmp_path, model=[str(starter_model)], config=tmp_path / "c.toml"
        ) as h:
            messages = [{"role": "user", "content": "Say hello."}]
            reply = await h.chat.completions.create(
                model=STARTER_ID, messages=messages, max_tokens=8, temperature=0
            )
            assert isinstance(reply, ChatCompletion)
            text = reply.choices[0].message.content
            assert text
            stream = await h.chat.completions.create(
                model=STARTER_ID, messages=messages, max_tokens=8, temperature=0, stream=True
            )
            chunks = [c async for c in stream]  # type: ignore[union-attr]
            assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
            assert STARTER_ID in [m.id for m in h.models.list().data]
            with pytest.raises(ModelNotFound):
                await h.chat.completions.create(model="nope", messages=messages)
            # The other dialects agree with chat: the same pipeline under each.
            msg = await h.messages.create(
                model=STARTER_ID, messages=messages, max_tokens=8, temperature=0
            )
            assert isinstance(msg, AnthropicMessage) and msg.content[0].text == text  # type: ignore[union-attr]
            counted = await h.messages.count_tokens(model=STARTER_ID, messages=messages)
            assert counted.input_tokens == msg.usage.input_tokens
            greedy = {"temperature": 0, "num_predict": 8}
            whole = await h.ollama.chat(
                model=STARTER_ID, messages=messages, options=greedy, stream=False
            )
            assert isinstance(whole, ChatResponse) and whole.message.content == text
            lines = await h.ollama.chat(model=STARTER_ID, messages=messages, options=greedy)
            got = [line async for line in lines]  # type: ignore[union-attr]
            assert "".join(x.message.content for x in got) == text  # type: ignore[union-attr]
            assert got[-1].done and got[-1].eval_count == whole.eval_count
            vectors = await h.ollama.embed(model=STARTER_ID, input=["a", "b"])
            assert len(vectors.embeddings) == 2
            # Responses, stored in the library's own database and continued from it.
            first = await h.responses.create(
                model=STARTER_ID, input="Say hello.", max_output_tokens=8, temperature=0
            )
            assert isinstance(first, Response) and first.output_text == text
            events = await h.responses.create(
                model=STARTER_ID,
                input="Again.",
                previous_response_id=first.id,
                max_output_tokens=8,
                stream=True,
            )
            kinds = [e.type async for e in events]  # type: ignore[union-attr]
            assert kinds[0] == "response.created" and kinds[-1] in TERMINAL
            assert (await h.responses.retrieve(first.id)).output_text == text
            page = await h.responses.input_items.list(first.id)
            assert len(page.data) == 1
            await h.responses.delete(first.id)

    asyncio.run(main())

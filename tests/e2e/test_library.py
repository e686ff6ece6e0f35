"""The in-process library on the real starter model: same objects as the wire, no HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth import Hearth
from hearth.api.chat.protocol import ChatCompletion, ChatCompletionChunk
from hearth.errors import ModelNotFound
from tests.e2e.conftest import STARTER_ID

pytestmark = pytest.mark.e2e


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

    asyncio.run(main())

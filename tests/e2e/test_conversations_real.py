"""The Conversations API through the official openai client against `hearth serve`: every
route, pagination as the client walks it, errors, a restart, retention in a live server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e


def test_conversations_with_the_official_client(server: RunningServer) -> None:
    client = server.client()
    conv = client.conversations.create(
        metadata={"topic": "colours"},
        items=[
            {"type": "message", "role": "system", "content": "Be brief."},
            {"type": "message", "role": "user", "content": "Name a colour."},
        ],
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "colours"}
    assert client.conversations.retrieve(conv.id).id == conv.id
    updated = client.conversations.update(conv.id, metadata={"topic": "shapes"})
    assert updated.metadata == {"topic": "shapes"}

    added = client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "assistant", "content": "Blue."},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ],
    )
    assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]

    # The client walks the pages by `after` = last_id until has_more is false.
    walked = [i.id for i in client.conversations.items.list(conv.id, limit=2, order="asc")]
    assert len(walked) == 5 and len(set(walked)) == 5
    newest = client.conversations.items.list(conv.id, limit=2)
    assert [i.id for i in newest.data] == walked[:-3:-1] and newest.has_more

    first = client.conversations.items.retrieve(walked[0], conversation_id=conv.id)
    assert first.type == "message" and first.role == "system"
    assert first.content[0].text == "Be brief."  # type: ignore[union-attr]

    after_delete = client.conversations.items.delete(walked[0], conversation_id=conv.id)
    assert after_delete.id == conv.id
    assert [i.id for i in client.conversations.items.list(conv.id, order="asc")] == walked[1:]

    deleted = client.conversations.delete(conv.id)
    assert deleted.deleted and deleted.id == conv.id
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conv.id)


def test_errors_reach_the_client_typed(server: RunningServer) -> None:
    client = server.client()
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list("conv_nope")
    with pytest.raises(openai.BadRequestError) as err:
        client.conversations.create(items=[{"type": "not_an_item"}])  # type: ignore[list-item]
    assert "items.0" in str(err.value)


def test_a_conversation_outlives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(tmp_path, None, data_dir=data)
    try:
        conv = first.client().conversations.create(
            items=[{"type": "message", "role": "user", "content": "remember me"}]
        )
    finally:
        first.stop()
    second = start_server(tmp_path, None, data_dir=data)
    try:
        items = list(second.client().conversations.items.list(conv.id))
        assert [i.content[0].text for i in items] == ["remember me"]  # type: ignore[union-attr]
    finally:
        second.stop()


def test_retention_archives_an_expired_conversation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(tmp_path, None, "--responses-ttl", "1s", data_dir=data)
    try:
        client = server.client()
        conv = client.conversations.create(metadata={"k": "v"})
        archive = data / "conversation_logs" / f"{conv.id}.json"
        deadline = time.monotonic() + 20
        while not archive.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert archive.is_file(), server.output
        assert json.loads(archive.read_text())["conversation"]["metadata"] == {"k": "v"}
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(conv.id)
    finally:
        server.stop()

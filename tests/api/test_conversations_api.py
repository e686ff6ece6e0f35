"""The Conversations API in process: every route, pagination, errors, the library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.client import Hearth
from hearth.errors import InvalidRequestError, NotFoundError
from tests.errorshape import error_fields

pytestmark = pytest.mark.anyio


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/conversations", json=body)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return error_fields(r.json(), r.url.path)


async def test_create_retrieve_update_delete(client: httpx.AsyncClient) -> None:
    conv = await create(client, metadata={"topic": "demo"})
    assert set(conv) == {"id", "object", "created_at", "metadata"}
    assert conv["id"].startswith("conv_") and conv["object"] == "conversation"
    assert conv["metadata"] == {"topic": "demo"} and isinstance(conv["created_at"], int)

    assert (await client.get(f"/v1/conversations/{conv['id']}")).json() == conv
    r = await client.post(f"/v1/conversations/{conv['id']}", json={"metadata": {"a": "b"}})
    assert r.status_code == 200 and r.json() == {**conv, "metadata": {"a": "b"}}

    r = await client.delete(f"/v1/conversations/{conv['id']}")
    assert r.json() == {"id": conv["id"], "object": "conversation.deleted", "deleted": True}
    assert error(await client.get(f"/v1/conversations/{conv['id']}"), 404)["code"] == "not_found"


async def test_an_empty_create_body(client: httpx.AsyncClient) -> None:
    conv = await create(client)
    assert conv["metadata"] == {}
    r = await client.get(f"/v1/conversations/{conv['id']}/items")
    assert r.json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


async def test_items_are_checked_given_ids_and_listed(client: httpx.AsyncClient) -> None:
    items = [
        {"role": "system", "content": "be brief"},  # the easy form: no type
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "message", "role": "assistant", "content": "calling"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "reasoning", "summary": []},
    ]
    conv = await create(client, items=items)
    r = await client.get(f"/v1/conversations/{conv['id']}/items", params={"order": "asc"})
    body = r.json()
    data = body["data"]
    assert [i["type"] for i in data] == [
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
    ]
    assert all(isinstance(i["id"], str) and i["id"] for i in data)
    assert len({i["id"] for i in data}) == 6
    # a message's text is listed as content parts, as OpenAI lists them
    assert data[0]["content"] == [{"type": "input_text", "text": "be brief"}]
    assert data[2]["content"] == [{"type": "output_text", "text": "calling"}]
    assert data[0]["status"] == "completed"
    assert data[3]["call_id"] == "call_1" and data[3]["arguments"] == "{}"
    assert (body["first_id"], body["last_id"], body["has_more"]) == (
        data[0]["id"],
        data[-1]["id"],
        False,
    )


async def test_items_pagination(client: httpx.AsyncClient) -> None:
    conv = await create(client)
    url = f"/v1/conversations/{conv['id']}/items"
    r = await client.post(
        url, json={"items": [{"role": "user", "content": str(i)} for i in range(5)]}
    )
    assert r.status_code == 200
    added = r.json()
    assert added["object"] == "list" and len(added["data"]) == 5 and not added["has_more"]
    ids = [i["id"] for i in added["data"]]

    page = (await client.get(url, params={"limit": 2})).json()  # newest first
    assert [i["id"] for i in page["data"]] == ids[:-3:-1] and page["has_more"]
    page = (await client.get(url, params={"limit": 2, "after": page["last_id"]})).json()
    assert [i["id"] for i in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    page = (await client.get(url, params={"limit": 2, "after": page["last_id"]})).json()
    assert [i["id"] for i in page["data"]] == [ids[0]] and not page["has_more"]
    page = (await client.get(url, params={"order": "asc", "after": ids[1], "limit": 100})).json()
    assert [i["id"] for i in page["data"]] == ids[2:]
    r = await client.get(url, params={"include[]": "message.output_text.logprobs"})
    assert r.status_code == 200  # accepted


async def test_retrieve_and_delete_an_item(client: httpx.AsyncClient) -> None:
    conv = await create(
        client, items=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    )
    url = f"/v1/conversations/{conv['id']}/items"
    first, second = (await client.get(url, params={"order": "asc"})).json()["data"]
    r = await client.get(f"{url}/{first['id']}")
    assert r.status_code == 200 and r.json() == first

    r = await client.delete(f"{url}/{first['id']}")
    assert r.status_code == 200 and r.json() == conv  # the conversation, as in OpenAI's API
    assert [i["id"] for i in (await client.get(url)).json()["data"]] == [second["id"]]
    assert error(await client.get(f"{url}/{first['id']}"), 404)["code"] == "not_found"
    assert error(await client.delete(f"{url}/{first['id']}"), 404)["code"] == "not_found"


async def test_an_item_reference_copies_an_item(client: httpx.AsyncClient) -> None:
    conv = await create(client, items=[{"role": "user", "content": "again"}])
    url = f"/v1/conversations/{conv['id']}/items"
    (original,) = (await client.get(url)).json()["data"]
    r = await client.post(url, json={"items": [{"type": "item_reference", "id": original["id"]}]})
    (copy,) = r.json()["data"]
    assert copy["id"] != original["id"] and copy["content"] == original["content"]
    r = await client.post(url, json={"items": [{"type": "item_reference", "id": "msg_nope"}]})
    assert error(r, 400)["param"] == "items.0.id"


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    base = "/v1/conversations/conv_nope"
    for r in [
        await client.get(base),
        await client.post(base, json={"metadata": {}}),
        await client.delete(base),
        await client.get(f"{base}/items"),
        await client.post(f"{base}/items", json={"items": [{"role": "user", "content": "x"}]}),
        await client.get(f"{base}/items/msg_x"),
        await client.delete(f"{base}/items/msg_x"),
    ]:
        fields = error(r, 404)
        assert fields["code"] == "not_found" and "conv_nope" in fields["message"], r.text
    conv = await create(client)
    r = await client.get(f"/v1/conversations/{conv['id']}/items", params={"after": "msg_x"})
    assert error(r, 404)["param"] == "after"


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"role": "user", "content": "ok"}] * 3 + [{"type": "web_search_call"}], "items.3"),
        ([{"type": "message", "role": "robot", "content": "x"}], "items.0.role"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "items.0.call_id"),
        ([{"type": "function_call_output", "call_id": "c"}, "text"], "items.1"),
        ([{"role": "user", "content": [{"type": "nope", "text": "x"}]}], "items.0.content.0"),
        ([{"role": "user", "content": "x"}] * 21, "items"),
    ],
)
async def test_bad_items_are_400_naming_the_item(
    client: httpx.AsyncClient, items: list[Any], param: str
) -> None:
    fields = error(await client.post("/v1/conversations", json={"items": items}), 400)
    assert fields["param"] == param
    conv = await create(client)
    r = await client.post(f"/v1/conversations/{conv['id']}/items", json={"items": items})
    assert error(r, 400)["param"] == param
    assert (await client.get(f"/v1/conversations/{conv['id']}/items")).json()["data"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "up"}, "order")],
)
async def test_bad_list_parameters(
    client: httpx.AsyncClient, params: dict[str, Any], param: str
) -> None:
    conv = await create(client)
    r = await client.get(f"/v1/conversations/{conv['id']}/items", params=params)
    assert error(r, 400)["param"] == param


@pytest.mark.parametrize(
    "metadata",
    [{f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}, {"k": 1}],
)
async def test_bad_metadata(client: httpx.AsyncClient, metadata: dict[str, Any]) -> None:
    fields = error(await client.post("/v1/conversations", json={"metadata": metadata}), 400)
    assert fields["param"] is not None and fields["param"].startswith("metadata")


async def test_update_needs_metadata(client: httpx.AsyncClient) -> None:
    conv = await create(client)
    r = await client.post(f"/v1/conversations/{conv['id']}", json={})
    assert error(r, 400)["param"] == "metadata"


async def test_the_library(tmp_path: Path) -> None:
    (tmp_path / "none").touch()
    async with Hearth(
        models_dir=tmp_path / "models", data_dir=tmp_path / "data", config=tmp_path / "none"
    ) as h:
        conv = await h.conversations.create(
            metadata={"a": "1"}, items=[{"role": "user", "content": "x"}]
        )
        assert (await h.conversations.retrieve(conv.id)) == conv
        assert (await h.conversations.update(conv.id, metadata={})).metadata == {}
        added = await h.conversations.items.create(
            conv.id, items=[{"role": "user", "content": "y"}]
        )
        page = await h.conversations.items.list(conv.id, order="asc")
        assert [i["id"] for i in page.data][1:] == [added.data[0]["id"]]
        item = await h.conversations.items.retrieve(conv.id, added.data[0]["id"])
        assert item["content"] == [{"type": "input_text", "text": "y"}]
        assert (await h.conversations.items.delete(conv.id, item["id"])).id == conv.id
        with pytest.raises(InvalidRequestError):
            await h.conversations.items.list(conv.id, limit=0)
        assert (await h.conversations.delete(conv.id)).deleted
        with pytest.raises(NotFoundError):
            await h.conversations.retrieve(conv.id)
    assert (tmp_path / "data" / "hearth.db").is_file()


async def test_conversations_survive_a_new_app(make_app: Any) -> None:
    first = make_app()
    async with first.router.lifespan_context(first):
        transport = httpx.ASGITransport(app=first)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            conv = await create(c, items=[{"role": "user", "content": "kept"}])
    second = make_app()
    async with second.router.lifespan_context(second):
        transport = httpx.ASGITransport(app=second)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            r = await c.get(f"/v1/conversations/{conv['id']}/items")
            assert [i["content"][0]["text"] for i in r.json()["data"]] == ["kept"]

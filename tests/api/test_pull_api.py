"""POST /api/pull: NDJSON progress lines, errors before and during the stream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hearth.api.app import create_app
from hearth.models.registry import ModelEntry
from hearth.settings import load_settings
from tests.errorshape import error_fields
from tests.fakes import FakeEngine
from tests.ggufs import write_tiny_gguf
from tests.hub import FakeHub, HubServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with HubServer() as running:
        yield running


@pytest.fixture
async def client(tmp_path: Path, hub: FakeHub) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "c.toml").touch()
    settings = load_settings(
        {
            "models_dir": tmp_path / "models",
            "config": tmp_path / "c.toml",
            "hf_endpoint": hub.url,
        },
        environ={},
    )

    def factory(entry: ModelEntry) -> FakeEngine:
        return FakeEngine(entry)

    app = create_app(settings, factory=factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            yield c


def lines(r: httpx.Response) -> list[dict[str, object]]:
    assert r.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in r.text.splitlines()]


async def test_pull_streams_progress_then_the_model_is_there(
    client: httpx.AsyncClient, hub: FakeHub, tmp_path: Path
) -> None:
    data = write_tiny_gguf(tmp_path / "src" / "m.gguf", rows=4096).read_bytes()
    hub.add("owner/repo", "Tiny-Q8_0.gguf", data, cut_after=100_000)
    r = await client.post("/api/pull", json={"model": "owner/repo:Q8_0"})
    assert r.status_code == 200
    events = lines(r)
    sha = hashlib.sha256(data).hexdigest()
    pulling = [e for e in events if e["status"] == f"pulling {sha[:12]}"]  # Ollama's names
    assert pulling and pulling[-1]["completed"] == pulling[-1]["total"] == len(data)
    assert pulling[-1]["digest"] == f"sha256:{sha}" and pulling[-1]["file"] == "Tiny-Q8_0.gguf"
    assert any(str(e["status"]).startswith("retrying") for e in events)
    assert events[0] == {"status": "pulling manifest"}
    assert [e["status"] for e in events[-2:]] == ["writing manifest", "success"]
    assert events[-1] == {"status": "success", "model": "tiny-q8_0"}
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "tiny-q8_0", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200


async def test_pull_without_streaming_returns_the_last_status(
    client: httpx.AsyncClient, hub: FakeHub, tmp_path: Path
) -> None:
    hub.add("owner/repo", "a.gguf", write_tiny_gguf(tmp_path / "a.gguf").read_bytes())
    r = await client.post("/api/pull", json={"name": "owner/repo/a.gguf", "stream": False})
    assert r.status_code == 200
    assert r.json() == {"status": "success", "model": "a"}


async def test_a_wrong_checksum_is_an_error_line_and_leaves_nothing(
    client: httpx.AsyncClient, hub: FakeHub, tmp_path: Path
) -> None:
    data = write_tiny_gguf(tmp_path / "a.gguf").read_bytes()
    hub.add("owner/repo", "a.gguf", data, advertised_sha256="f" * 64)
    r = await client.post("/api/pull", json={"model": "owner/repo/a.gguf"})
    last = lines(r)[-1]
    assert error_fields(last, "/api/pull")["code"] == "checksum_mismatch"
    assert list((tmp_path / "models").iterdir()) == []
    r = await client.post("/api/pull", json={"model": "owner/repo/a.gguf", "stream": False})
    assert r.status_code == 502 and r.json()["code"] == "checksum_mismatch"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "owner/repo"}, 400, "invalid_request"),
        ({"model": "owner/repo/../x.gguf"}, 400, "invalid_request"),
        ({"model": "owner/repo/a.gguf", "filename": "../a.gguf"}, 400, "unsafe_path"),
        ({"model": "owner/repo/a.gguf", "filename": "a%2F..%2Fb.gguf"}, 400, "unsafe_path"),
        ({"model": "owner/repo/missing.gguf"}, 404, "remote_not_found"),
        ({"model": "nobody/nothing:Q4_0"}, 404, "remote_not_found"),
        ({"model": "owner/repo/a.gguf", "sha256": "xyz"}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
    ],
)
async def test_bad_pulls_are_plain_errors(
    client: httpx.AsyncClient,
    hub: FakeHub,
    tmp_path: Path,
    body: dict[str, str],
    status: int,
    code: str,
) -> None:
    hub.add("owner/repo", "a.gguf", write_tiny_gguf(tmp_path / "a.gguf").read_bytes())
    r = await client.post("/api/pull", json=body)
    assert r.status_code == status, r.text
    assert error_fields(r.json(), "/api/pull")["code"] == code
    assert not (tmp_path / "a.gguf.partial").exists()
    assert (await client.get("/health")).status_code == 200

"""Ollama's model management over HTTP with a fake engine: /api/tags, show, copy, create,
blobs, delete of copies and created models, ps fields; every error in Ollama's shape."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import gguf
import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from hearth.api.app import create_app
from hearth.chat.template import FALLBACK_TEMPLATE
from hearth.models.registry import ModelEntry
from hearth.runtime import engine_options
from hearth.settings import load_settings
from tests.errorshape import error_fields
from tests.fakes import FakeEngine
from tests.ggufs import write_tiny_gguf

pytestmark = pytest.mark.anyio

TOOLS_TEMPLATE = (
    "{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "<tool_call></tool_call><think></think>"
)


def write_coder_gguf(path: Path) -> Path:
    """A model whose template handles tools and thinking and whose vocabulary has FIM tokens
    and more tokens than show lists without `verbose`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(512)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_chat_template(TOOLS_TEMPLATE)
    writer.add_token_list([f"t{i}" for i in range(10)])
    for key, value in (("fim_pre", 1), ("fim_suf", 2), ("fim_mid", 3)):
        writer.add_uint32(f"tokenizer.ggml.{key}_token_id", value)
    writer.add_tensor("blk.0.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def build(tmp_path: Path) -> Callable[..., tuple[FastAPI, dict[str, FakeEngine]]]:
    models = tmp_path / "models"
    write_tiny_gguf(models / "base.gguf")
    write_coder_gguf(models / "coder.gguf")
    config = tmp_path / "config.toml"
    config.touch()

    def make(**flags: Any) -> tuple[FastAPI, dict[str, FakeEngine]]:
        settings = load_settings({"models_dir": models, "config": config, **flags}, environ={})
        engines: dict[str, FakeEngine] = {}

        def factory(entry: ModelEntry) -> FakeEngine:
            options = engine_options(settings, entry)
            engine = FakeEngine(entry, ctx_size=options.ctx_size or 256)
            engines[entry.id] = engine
            return engine

        return create_app(settings, factory=factory), engines

    return make


async def connect(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            yield c


@pytest.fixture
async def client(build: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    app, engines = build()
    async for c in connect(app):
        c.engines = engines  # type: ignore[attr-defined]
        yield c


def assert_error(r: httpx.Response, status: int, code: str, param: str | None) -> str:
    assert r.status_code == status, r.text
    error = error_fields(r.json(), r.request.url.path)
    assert (error["code"], error["param"]) == (code, param), r.text
    return str(error["message"])


async def tags(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await c.get("/api/tags")
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


def ndjson(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in r.text.splitlines()]


async def test_tags_lists_every_model_with_ollama_fields(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    listed = await tags(client)
    assert set(listed) == {"base:latest", "coder:latest"}
    base = listed["base:latest"]
    assert base["model"] == "base:latest"
    assert base["size"] == (tmp_path / "models" / "base.gguf").stat().st_size
    assert len(base["digest"]) == 64 and int(base["digest"], 16) >= 0
    assert base["modified_at"].endswith("Z")
    assert base["details"] == {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "128",
        "quantization_level": "F32",
    }
    assert (await tags(client))["base:latest"]["digest"] == base["digest"]  # stable
    assert listed["coder:latest"]["digest"] != base["digest"]


async def test_show_details_metadata_template_and_capabilities(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/show", json={"model": "coder"})
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["capabilities"] == ["completion", "tools", "thinking", "insert"]
    assert shown["template"] == TOOLS_TEMPLATE
    info = shown["model_info"]
    assert info["general.architecture"] == "qwen2"
    assert info["qwen2.context_length"] == 512
    assert info["general.parameter_count"] == 128
    assert info["tokenizer.ggml.fim_pre_token_id"] == 1
    assert info["tokenizer.ggml.tokens"] == []  # long arrays only with verbose
    assert "tokenizer.chat_template" not in info
    assert shown["details"]["family"] == "qwen2" and shown["parameters"] == ""
    assert "system" not in shown
    r = await client.post("/api/show", json={"name": "coder:latest", "verbose": True})
    assert r.json()["model_info"]["tokenizer.ggml.tokens"] == [f"t{i}" for i in range(10)]
    r = await client.post("/api/show", json={"model": "base"})
    assert r.json()["capabilities"] == ["completion"]
    assert r.json()["template"] == FALLBACK_TEMPLATE


async def test_copy_then_delete_the_copy_keeps_the_original(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    r = await client.post("/api/copy", json={"source": "base:latest", "destination": "Mine:V2"})
    assert r.status_code == 200 and r.content == b""
    listed = await tags(client)
    assert set(listed) == {"base:latest", "coder:latest", "mine:v2"}
    assert listed["mine:v2"]["digest"] == listed["base:latest"]["digest"]
    body = {"model": "mine:v2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    r = await client.request("DELETE", "/api/delete", json={"model": "base"})
    assert "mine:v2" in assert_error(r, 409, "conflict", "model")  # the copy relies on it
    r = await client.request("DELETE", "/api/delete", json={"model": "mine:v2"})
    assert r.json() == {"model": "mine:v2", "status": "deleted", "files": []}
    assert set(await tags(client)) == {"base:latest", "coder:latest"}
    assert (tmp_path / "models" / "base.gguf").is_file()
    r = await client.post("/api/show", json={"model": "mine:v2"})
    assert assert_error(r, 404, "model_not_found", "model") == (
        'model "mine:v2" not found, try pulling it first'
    )


async def test_copy_survives_a_new_app_on_the_same_models_dir(
    build: Callable[..., Any], tmp_path: Path
) -> None:
    app, _ = build()
    async for c in connect(app):
        r = await c.post("/api/copy", json={"source": "coder", "destination": "helper"})
        assert r.status_code == 200
    saved = json.loads((tmp_path / "models" / ".hearth" / "names.json").read_text())
    assert saved["copies"][0]["name"] == "helper"
    app, _ = build()
    async for c in connect(app):
        assert "helper:latest" in await tags(c)
        r = await c.post("/api/show", json={"model": "helper"})
        assert r.json()["capabilities"][:2] == ["completion", "tools"]


async def test_copy_onto_a_taken_name(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/copy", json={"source": "base", "destination": "coder"})
    assert "already exists" in assert_error(r, 409, "already_exists", "destination")
    for source in ("base", "coder"):  # a copy may be replaced, as Ollama overwrites
        r = await client.post("/api/copy", json={"source": source, "destination": "pick"})
        assert r.status_code == 200
    r = await client.post("/api/show", json={"model": "pick"})
    assert r.json()["details"]["family"] == "qwen2"
    r = await client.post("/api/copy", json={"source": "nope", "destination": "x"})
    assert_error(r, 404, "model_not_found", "model")


async def test_create_from_a_model_with_system_and_parameters(
    build: Callable[..., Any],
) -> None:
    app, engines = build()
    body = {
        "model": "pirate",
        "from": "base",
        "system": "You are a pirate.",
        "parameters": {"temperature": 0.3, "top_k": 5, "num_ctx": 128, "num_predict": 7},
    }
    async for c in connect(app):
        r = await c.post("/api/create", json=body)
        statuses = [line["status"] for line in ndjson(r)]
        assert statuses[0].startswith("using existing layer sha256:")
        assert statuses[-2:] == ["writing manifest", "success"]
        shown = (await c.post("/api/show", json={"model": "pirate:latest"})).json()
        assert shown["system"] == "You are a pirate."
        assert shown["details"]["parent_model"] == "base:latest"
        lines = shown["parameters"].splitlines()
        assert lines[0] == f"{'num_ctx':<30} 128" and f"{'temperature':<30} 0.3" in lines
        chat = {"model": "pirate", "messages": [{"role": "user", "content": "hi"}]}
        r = await c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 200, r.text
        engine = engines["pirate"]
        assert "You are a pirate." in engine.prompts[-1]
        assert engine.info.ctx_size == 128
        request = engine.requests[-1]
        assert (request.sampling.temperature, request.sampling.top_k) == (0.3, 5)
        rt = app.state.runtime  # the real engine caps answers at this (the fake one does not)
        assert rt.max_output_tokens(rt.registry.get("pirate")) == 7
        r = await c.post("/v1/chat/completions", json={**chat, "model": "base"})
        assert "pirate" not in engines["base"].prompts[-1]  # the original is unchanged
        ps = (await c.get("/api/ps")).json()["models"]
        pirate = next(m for m in ps if m["name"] == "pirate")
        assert pirate["details"]["parent_model"] == "base:latest"
        assert pirate["details"]["families"] == ["llama"] and len(pirate["digest"]) == 64
        # Created anew without streaming: one object; the loaded one takes the new settings.
        again = {**body, "system": "You are a parrot.", "stream": False}
        r = await c.post("/api/create", json=again)
        assert r.json() == {"status": "success"}
        r = await c.post("/v1/chat/completions", json=chat)
        assert "You are a parrot." in engines["pirate"].prompts[-1]
        r = await c.request("DELETE", "/api/delete", json={"model": "base"})
        assert "pirate:latest" in assert_error(r, 409, "conflict", "model")
    app, engines = build()  # a restart keeps it
    async for c in connect(app):
        shown = (await c.post("/api/show", json={"model": "pirate"})).json()
        assert shown["system"] == "You are a parrot."
        r = await c.request("DELETE", "/api/delete", json={"model": "pirate"})
        assert r.json()["files"] == []
        assert set(await tags(c)) == {"base:latest", "coder:latest"}


async def test_create_from_an_uploaded_blob(client: httpx.AsyncClient, tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "upload.gguf", context_length=1024).read_bytes()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
    r = await client.post(f"/api/blobs/{digest}", content=data)
    assert r.status_code == 201, r.text
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 200
    assert (await client.post(f"/api/blobs/{digest}", content=data)).status_code == 200
    body = {"model": "uploaded:v1", "files": {"upload.gguf": digest}, "system": "Be brief."}
    statuses = [line["status"] for line in ndjson(await client.post("/api/create", json=body))]
    assert statuses == [
        "parsing GGUF",
        f"using existing layer {digest}",
        "writing manifest",
        "success",
    ]
    listed = await tags(client)
    assert listed["uploaded:v1"]["size"] == len(data)
    assert (tmp_path / "models" / "uploaded-v1.gguf").read_bytes() == data
    assert "uploaded-v1:latest" not in listed  # one model, under the name it was created as
    shown = (await client.post("/api/show", json={"model": "uploaded:v1"})).json()
    assert shown["model_info"]["llama.context_length"] == 1024
    assert shown["system"] == "Be brief."
    r = await client.post("/api/create", json=body)  # the blob went into the models directory
    assert_error(r, 409, "already_exists", "model")
    r = await client.request("DELETE", "/api/delete", json={"model": "uploaded:v1"})
    assert r.json()["files"] == ["uploaded-v1.gguf"]
    assert not (tmp_path / "models" / "uploaded-v1.gguf").exists()
    r = await client.post("/api/create", json=body)
    assert "upload it first" in assert_error(r, 400, "invalid_request", "files")


async def test_a_blob_upload_is_exempt_from_the_body_limit(
    build: Callable[..., Any], tmp_path: Path
) -> None:
    app, _ = build(max_body_bytes=1024)
    data = write_tiny_gguf(tmp_path / "big.gguf", rows=64).read_bytes()
    assert len(data) > 1024
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async for c in connect(app):
        r = await c.post(f"/api/blobs/{digest}", content=data)
        assert r.status_code == 201, r.text
        r = await c.post("/api/show", content=b'{"model": "' + b"x" * 2000 + b'"}')
        assert_error(r, 413, "request_too_large", None)  # every other route keeps the limit


async def test_a_blob_with_the_wrong_digest_leaves_nothing(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    digest = "sha256:" + "0" * 64
    r = await client.post(f"/api/blobs/{digest}", content=b"not what was named")
    assert "digest mismatch" in assert_error(r, 400, "digest_mismatch", "digest")
    assert list((tmp_path / "models" / ".hearth" / "blobs").iterdir()) == []
    assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
    r = await client.post("/api/blobs/md5:abc", content=b"x")
    assert_error(r, 400, "invalid_request", "digest")
    data = b"GGUF but not really"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert (await client.post(f"/api/blobs/{digest}", content=data)).status_code == 201
    r = await client.post("/api/create", json={"model": "junk", "files": {"j.gguf": digest}})
    assert "not a usable GGUF" in assert_error(r, 422, "invalid_model_file", None)
    assert "junk:latest" not in await tags(client)


def from_base(**extra: Any) -> dict[str, Any]:
    return {"model": "x", "from": "base", **extra}


def params(**values: Any) -> dict[str, Any]:
    return from_base(parameters=values)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (from_base(template="{{ .Prompt }}"), "template", "Jinja"),
        (params(mirostat=1), "parameters.mirostat", "mirostat"),
        (params(stop=["<x>"]), "parameters.stop", "stop"),
        (params(temperature=9), "parameters.temperature", "temperature"),
        (params(num_ctx=8), "parameters.num_ctx", "from 64 to"),
        (from_base(quantize="q4_K_M"), "quantize", "quantizing"),
        ({"model": "x", "modelfile": "FROM base"}, "modelfile", "Modelfile"),
        ({"model": "x"}, "from", "missing"),
        (from_base(files={}), "files", "not both"),
        ({"model": "x", "files": {"a.bin": "sha256:" + "0" * 64}}, "files", ".gguf"),
        (from_base(model="Bad Name!"), "model", "not a valid model name"),
        (from_base(model="a:b:c"), "model", "not a valid model name"),
        ({"from": "base"}, "model", "missing"),
        (from_base(stream="often"), "stream", "bool"),
    ],
)
async def test_bad_creates_are_400_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], param: str, words: str
) -> None:
    r = await client.post("/api/create", json=body)
    assert words in assert_error(r, 400, "invalid_request", param)
    assert "x:latest" not in await tags(client)


@pytest.mark.parametrize(
    ("method", "route", "body", "param"),
    [
        ("POST", "/api/show", {}, "model"),
        ("POST", "/api/show", {"model": 3}, "model"),
        ("POST", "/api/copy", {"source": "base"}, "destination"),
        ("POST", "/api/copy", {"source": "base", "destination": "../x"}, "destination"),
        ("POST", "/api/create", [], None),
    ],
)
async def test_bad_bodies_are_400(
    client: httpx.AsyncClient, method: str, route: str, body: Any, param: str | None
) -> None:
    r = await client.request(method, route, json=body)
    assert_error(r, 400, "invalid_request", param)


async def test_unknown_models_are_ollamas_404(client: httpx.AsyncClient) -> None:
    message = 'model "ghost" not found, try pulling it first'
    for method, route, body in [
        ("POST", "/api/show", {"model": "ghost"}),
        ("POST", "/api/create", {"model": "x", "from": "ghost"}),
        ("POST", "/api/copy", {"source": "ghost", "destination": "x"}),
        ("DELETE", "/api/delete", {"model": "ghost"}),
    ]:
        r = await client.request(method, route, json=body)
        assert assert_error(r, 404, "model_not_found", "model") == message

"""/openapi.json describes every route the app serves: each path with each of its methods, the
body of every operation that takes one, and the stream of every operation that can stream."""

from __future__ import annotations

import inspect
import re
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

pytestmark = pytest.mark.anyio

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Operations that write but take no body: anything else that writes must declare one.
BODYLESS = {
    "POST /v1/responses/{response_id}/cancel",
    "POST /v1/mcp/servers/{name}/restart",
    "POST /api/shutdown",
}
# An endpoint that reads the body off its Request parses it itself: FastAPI cannot see it.
_READS_BODY = re.compile(r"\brequest\.(body|json|form|stream)\(")


def served_routes(app: FastAPI) -> list[Any]:
    """Every route the app dispatches to, an included router's under their full paths."""
    # Newer FastAPI keeps an included router as one entry of app.routes and walks it itself;
    # older versions copy its routes into app.routes.
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(walk(app.routes)) if walk is not None else list(app.routes)


def documentation_paths(app: FastAPI) -> set[str]:
    """FastAPI's own routes that serve the document and its viewers, and the mount of the web
    UI's files (pages, not operations of the API)."""
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {p for p in paths if p} | {"/ui"}


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each operation of the document under its label, `METHOD /path`."""
    return {
        f"{method.upper()} {path}": op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = doc["components"]["schemas"][name]
    return schema


@pytest.fixture
async def doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


async def test_every_route_is_in_the_document_with_its_methods(
    app: FastAPI, doc: dict[str, Any]
) -> None:
    skip = documentation_paths(app)
    served = set()
    for route in served_routes(app):
        if route.path in skip:
            continue
        # A mount or a websocket has no methods to document: the test says so, not skips it.
        assert route.methods, f"{route.path}: not an HTTP route"
        served |= {f"{method} {route.path_format}" for method in route.methods}
    documented = set(operations(doc))
    assert served - documented == set(), "served but not in the document"
    assert documented - served == set(), "in the document but not served"
    assert len(served) > 40  # every router's routes, included ones too


async def test_every_body_is_declared_with_its_schema(app: FastAPI, doc: dict[str, Any]) -> None:
    ops = operations(doc)
    for route in served_routes(app):
        if route.path in documentation_paths(app):
            continue
        reads_body = bool(_READS_BODY.search(inspect.getsource(route.endpoint)))
        for method in route.methods:
            label = f"{method} {route.path_format}"
            body = ops[label].get("requestBody")
            if label in BODYLESS:
                assert body is None, f"{label} takes a body now: take it off BODYLESS"
                continue
            if method in ("POST", "PUT", "PATCH") or reads_body:
                assert body is not None and body.get("required"), f"{label}: no body declared"
            if body is None:
                continue
            content = body["content"]
            if "application/json" in content:
                schema = resolve(doc, content["application/json"]["schema"])
                assert schema.get("type") == "object" and schema.get("properties"), label
            else:
                assert content == {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }, label


async def test_every_stream_is_documented(doc: dict[str, Any]) -> None:
    streams = set()
    for label, op in operations(doc).items():
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        fields = set(resolve(doc, body["schema"]).get("properties", {})) if body else set()
        fields |= {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if "stream" not in fields:
            continue
        streams.add(label)
        answers = op["responses"]["200"]["content"]
        # Ollama's dialect streams NDJSON; the others server-sent events.
        ollama = label.split()[1].startswith("/api/")
        kind = "application/x-ndjson" if ollama else "text/event-stream"
        assert set(answers) == {"application/json", kind}, label
    assert streams >= {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/messages",
        "POST /v1/responses",
        "GET /v1/responses/{response_id}",
        "POST /api/chat",
        "POST /api/generate",
        "POST /api/pull",
        "POST /api/create",
    }

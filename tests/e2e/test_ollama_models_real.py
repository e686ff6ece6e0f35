"""Ollama's model management with the official `ollama` client against the real server and the
starter model: list, show, ps, pull from the hub stand-in, copy, create, blobs, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, start_server
from tests.ggufs import write_tiny_gguf
from tests.hub import FakeHub, HubServer

pytestmark = pytest.mark.e2e

STARTER = f"{STARTER_ID}:latest"
QUESTION: list[Any] = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with HubServer() as running:
        yield running


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path, hub: FakeHub
) -> Iterator[RunningServer]:
    """A server of its own: these tests add and remove names in its models directory."""
    tmp = tmp_path_factory.mktemp("ollama-models")
    config = tmp / "config.toml"
    config.write_text(f'hf_endpoint = "{hub.url}"\n')
    running = start_server(tmp, starter_model, "--parallel", "2", config=config)
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=300)


def prompt_tokens(server: RunningServer, model: str, system: str | None = None) -> int:
    messages: list[Any] = [{"role": "system", "content": system}] if system else []
    answer = server.client().chat.completions.create(
        model=model, messages=[*messages, *QUESTION], max_tokens=3, temperature=0
    )
    assert answer.choices[0].message.content is not None
    assert answer.usage is not None
    return answer.usage.prompt_tokens


def test_list_show_and_ps(client: ollama.Client) -> None:
    listed = {m.model: m for m in client.list().models}
    starter = listed[STARTER]
    assert starter.size and starter.digest and len(starter.digest) == 64
    assert starter.modified_at is not None
    assert starter.details is not None
    assert (starter.details.format, starter.details.family) == ("gguf", "llama")
    assert starter.details.families == ["llama"] and starter.details.quantization_level
    assert starter.details.parameter_size == "135M"

    shown = client.show(STARTER_ID)
    assert shown.capabilities == ["completion"]  # its template renders no tools
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] > 100_000_000
    assert shown.template and "<|im_start|>" in shown.template
    assert shown.details is not None and shown.details.family == "llama"

    ps = {m.model: m for m in client.ps().models}
    loaded = ps[STARTER_ID]  # loaded at start (--model); ps shows ids
    assert loaded.digest == starter.digest
    assert loaded.size and loaded.context_length and loaded.details is not None
    assert loaded.details.parent_model == "" and loaded.details.families == ["llama"]


def test_pull_from_the_hub_stand_in(client: ollama.Client, hub: FakeHub, tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "tiny.gguf", rows=4096).read_bytes()
    hub.add("owner/repo", "tiny.gguf", data)
    events = list(client.pull("owner/repo/tiny.gguf", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["validating", "writing manifest", "success"]
    assert "verifying sha256 digest" in statuses
    layers = [e for e in events if e.status and e.status.startswith("pulling ") and e.digest]
    assert layers and layers[-1].completed == layers[-1].total == len(data)
    assert layers[-1].status == f"pulling {layers[-1].digest.removeprefix('sha256:')[:12]}"  # type: ignore[union-attr]
    assert client.pull("owner/repo/tiny.gguf").status == "success"  # already there
    assert "tiny:latest" in {m.model for m in client.list().models}
    client.delete("tiny")


def test_copy_then_delete_the_copy(client: ollama.Client, server: RunningServer) -> None:
    assert client.copy(STARTER, "starter-copy:v1").status == "success"
    listed = {m.model: m for m in client.list().models}
    assert listed["starter-copy:v1"].digest == listed[STARTER].digest
    prompt_tokens(server, "starter-copy:v1")  # the copy answers
    with pytest.raises(ollama.ResponseError) as refused:
        client.delete(STARTER)  # the copy relies on it
    assert refused.value.status_code == 409
    assert client.delete("starter-copy:v1").status == "success"
    assert "starter-copy:v1" not in {m.model for m in client.list().models}
    assert prompt_tokens(server, STARTER_ID) > 0  # the original stays and answers


def test_create_from_the_starter_with_a_system_prompt(
    client: ollama.Client, server: RunningServer
) -> None:
    system = "You are a pirate. Answer every question about the sea, in the words of a pirate."
    done = client.create(
        model="pirate", from_=STARTER_ID, system=system, parameters={"temperature": 0.1}
    )
    assert done.status == "success"
    # The starter's template has a default system prompt; the created model's replaces it,
    # exactly as if the request had sent it.
    pirate = prompt_tokens(server, "pirate")
    assert pirate > prompt_tokens(server, STARTER_ID)
    assert pirate == prompt_tokens(server, STARTER_ID, system)
    shown = client.show("pirate")
    assert shown.details is not None and shown.details.parent_model == STARTER
    assert shown.parameters == f"{'temperature':<30} 0.1"
    assert shown.modelfile is not None and f'SYSTEM """{system}"""' in shown.modelfile
    raw = httpx.post(f"{server.url}/api/show", json={"model": "pirate"}, timeout=30).json()
    assert raw["system"] == system
    statuses = [p.status for p in client.create(model="pirate2", from_="pirate", stream=True)]
    assert statuses[-1] == "success"
    for name in ("pirate2", "pirate"):
        client.delete(name)


def test_create_from_an_uploaded_blob(
    client: ollama.Client, server: RunningServer, starter_model: Path
) -> None:
    digest = client.create_blob(starter_model)
    assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=30).status_code == 200
    done = client.create(model="uploaded", files={starter_model.name: digest})
    assert done.status == "success"
    listed = {m.model: m for m in client.list().models}
    assert listed["uploaded:latest"].size == starter_model.stat().st_size
    assert prompt_tokens(server, "uploaded") > 0  # a model in its own right, served
    client.delete("uploaded")
    assert "uploaded:latest" not in {m.model for m in client.list().models}


def test_unknown_models_are_404(client: ollama.Client) -> None:
    for call in (lambda: client.delete("ghost"), lambda: client.show("ghost")):
        with pytest.raises(ollama.ResponseError) as missing:
            call()
        assert missing.value.status_code == 404
        assert missing.value.error == 'model "ghost" not found, try pulling it first'


def test_the_context_a_request_gets_is_shown_everywhere(
    client: ollama.Client, server: RunningServer
) -> None:
    """The default context is the trained one (8192 for the starter) within the memory
    budget: logged once at load, and shown by /v1/models (openai), /api/show and /api/ps."""
    assert "context 8192 per sequence, 2 sequences, KV 377 MB" in server.output
    listed = server.client().models.retrieve(STARTER_ID).model_extra or {}
    assert listed["context_window"] == listed["max_model_len"] == 8192
    assert listed["hearth"]["parallel"] == 2
    assert listed["hearth"]["kv_cache_bytes"] == 2 * 30 * 3 * 64 * 2 * 8192 * 2
    shown = client.show(STARTER_ID).modelinfo or {}
    assert shown["hearth.context_length"] == 8192 and shown["hearth.parallel"] == 2
    assert shown["hearth.kv_cache_bytes"] == listed["hearth"]["kv_cache_bytes"]
    loaded = {m.model: m for m in client.ps().models}[STARTER_ID]
    assert loaded.context_length == 8192

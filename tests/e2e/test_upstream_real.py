"""Models served upstream, on the real starter model: two more `hearth serve`s with the
starter play the distributed engine, and the Hearth in front routes `backend = "openai"`
models to them. Through the official clients: chat (streamed and not), completions,
embeddings, a stored three-turn Responses conversation, an MCP tool call, Ollama's /api/chat
and Anthropic's Messages; the upstream's own errors; an upstream killed mid-stream; failover
to the second base URL; an upstream that hangs; a client that leaves; the listings, metrics
and request log."""

from __future__ import annotations

import http.server
import json
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import numpy as np
import ollama
import openai
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, hearth, start_server, wait_healthy

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ASK = [{"role": "user", "content": "Name a colour."}]
# Longer than the starter template's own default system message, whatever its wording.
BRIEF = "You are a ship's cook on a long voyage. " * 8


class _Hanging(http.server.BaseHTTPRequestHandler):
    """An upstream that lists one model, answers its health check, and then never answers
    a generation (or, for `/stall`, sends the stream's headers and one chunk, then nothing)."""

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "slow", "object": "model"}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length))
        if request["messages"][0]["content"] == "stall":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            chunk = {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        time.sleep(30)

    def log_message(self, *_: Any) -> None:
        pass


@dataclass
class Cluster:
    front: RunningServer
    one: RunningServer  # behind `remote` and `pair`
    two: RunningServer  # behind `solo` and `pair`; the test that kills it goes last
    config: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("upstream")
    one = start_server(
        tmp, starter_model, "--parallel", "4", wait_ready=False, data_dir=tmp / "one"
    )
    two = start_server(
        tmp, starter_model, "--parallel", "2", wait_ready=False, data_dir=tmp / "two"
    )
    hang = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hanging)
    hang.daemon_threads = True
    threading.Thread(target=hang.serve_forever, daemon=True).start()
    hang_url = f"http://127.0.0.1:{hang.server_address[1]}"
    mcp = tmp / "mcp.json"
    servers = {"test": {"command": sys.executable, "args": ["-m", "tests.mcp_server"]}}
    mcp.write_text(
        json.dumps({"mcpServers": {k: {**v, "cwd": str(ROOT)} for k, v in servers.items()}})
    )
    config = tmp / "front.toml"
    config.write_text(
        f"""
mcp_config = "{mcp}"
max_queue = 1

[[models]]
id = "remote"
backend = "openai"
base_url = "{one.url}/v1"
upstream_model = "{STARTER_ID}"

[[models]]
id = "solo"
backend = "openai"
base_url = "{two.url}"

[[models]]
id = "pair"
backend = "openai"
base_url = ["{one.url}", "{two.url}"]
balance = "least-busy"

[[models]]
id = "briefed"
backend = "openai"
base_url = "{one.url}"
system_prompt = "{BRIEF}"

[[models]]
id = "narrow"
backend = "openai"
base_url = "{one.url}"
max_concurrency = 1

[[models]]
id = "slow"
backend = "openai"
base_url = "{hang_url}"
timeout_s = 2

[[models]]
id = "wrong-name"
backend = "openai"
base_url = "{one.url}"
upstream_model = "no-such-model"
"""
    )
    for server in (one, two):
        wait_healthy(server)
    front = start_server(tmp, None, config=config, data_dir=tmp / "front")
    yield Cluster(front, one, two, config)
    front.stop()
    one.stop()
    two.stop()
    hang.shutdown()


def chat_text(client: openai.OpenAI, model: str, **extra: Any) -> str:
    r = client.chat.completions.create(
        model=model, messages=ASK, temperature=0, max_tokens=16, **extra
    )  # type: ignore[arg-type]
    return r.choices[0].message.content or ""


def long_stream(client: openai.OpenAI, model: str) -> Any:
    """A stream that goes on for a while (for tests that cut it)."""
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=2000,
        stream=True,
    )


def test_listed_with_what_the_upstream_reports(cluster: Cluster) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # upstreams are asked in the background at start
        listed = httpx.get(f"{cluster.front.url}/v1/models").json()["data"]
        models = {m["id"]: m for m in listed}
        if (
            models["remote"]["hearth"]["status"] == "loaded"
            and models["wrong-name"]["hearth"]["error"]
        ):
            break
        time.sleep(0.2)
    remote = models["remote"]
    assert remote["hearth"]["backend"] == "openai"
    assert remote["context_window"] == 8192  # what the upstream Hearth reports for the starter
    assert remote["hearth"]["upstream"]["base_urls"][0]["url"] == cluster.one.url
    assert "serves no model 'no-such-model'" in models["wrong-name"]["hearth"]["error"]
    tags = httpx.get(f"{cluster.front.url}/api/tags").json()["models"]
    assert "remote:latest" in {t["name"] for t in tags}
    show = httpx.post(f"{cluster.front.url}/api/show", json={"model": "remote"}).json()
    assert show["model_info"]["hearth.backend"] == "openai"
    cli = hearth("models", HEARTH_CONFIG=str(cluster.config))
    assert cli.returncode == 0, cli.stderr
    assert f"{cluster.one.url}: reachable" in cli.stdout
    assert "backend openai" in cli.stdout


def test_chat_streamed_and_not_is_the_upstreams_answer(cluster: Cluster) -> None:
    direct = chat_text(cluster.one.client(), STARTER_ID)
    front = cluster.front.client()
    assert chat_text(front, "remote") == direct
    stream = front.chat.completions.create(
        model="remote",
        messages=ASK,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3 and "".join(pieces) == direct  # token by token, not one lump
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_completions_and_embeddings(cluster: Cluster) -> None:
    front = cluster.front.client()
    r = front.completions.create(
        model="remote", prompt=["Once upon a time", "The cat"], n=2, max_tokens=4
    )
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    assert r.usage is not None and r.usage.completion_tokens > 0
    texts = ["a red apple", "the green sea"]
    mine = front.embeddings.create(model="remote", input=texts)
    theirs = cluster.one.client().embeddings.create(model=STARTER_ID, input=texts)
    for a, b in zip(mine.data, theirs.data, strict=True):
        assert np.allclose(a.embedding, b.embedding, atol=1e-6)
    assert mine.usage.prompt_tokens == theirs.usage.prompt_tokens


def test_a_stored_three_turn_conversation_stays_in_front(cluster: Cluster) -> None:
    front = cluster.front.client()
    first = front.responses.create(model="remote", input="My name is Ada.", max_output_tokens=8)
    second = front.responses.create(
        model="remote", input="What is my name?", previous_response_id=first.id, max_output_tokens=8
    )
    third = front.responses.create(
        model="remote", input="Thanks.", previous_response_id=second.id, max_output_tokens=8
    )
    assert third.output_text and third.usage is not None
    # Turn three was answered over the whole history: more prompt tokens than turn one's.
    assert first.usage is not None and third.usage.input_tokens > first.usage.input_tokens
    items = front.responses.input_items.list(third.id, order="asc")
    texts = json.dumps([i.model_dump() for i in items.data])
    assert "My name is Ada." in texts and "What is my name?" in texts
    assert front.responses.retrieve(third.id).output_text == third.output_text
    # The upstream only generated: the conversation is stored in front, not there.
    assert httpx.get(f"{cluster.one.url}/v1/responses/{third.id}").status_code == 404


def test_an_mcp_tool_runs_in_front(cluster: Cluster) -> None:
    r = cluster.front.client().responses.create(
        model="remote",
        input="What is 2 + 3? Use the add tool.",
        tools=[{"type": "mcp", "server_label": "test", "require_approval": "never"}],  # type: ignore[list-item]
        tool_choice={"type": "mcp", "server_label": "test", "name": "add"},  # type: ignore[arg-type]
        temperature=0,
        max_output_tokens=48,
    )
    call = next(i for i in r.output if i.type == "mcp_call")
    args = json.loads(call.arguments)  # type: ignore[union-attr]
    assert call.output == str(args["a"] + args["b"])  # type: ignore[union-attr]
    assert r.output[-1].type == "message"


def test_a_forced_function_call_comes_back_parsed(cluster: Cluster) -> None:
    r = cluster.front.client().chat.completions.create(
        model="remote",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            }
        ],
        tool_choice="required",
        max_tokens=40,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]


def test_ollama_and_anthropic_clients(cluster: Cluster) -> None:
    o = ollama.Client(host=cluster.front.url)
    answer = o.chat(model="remote", messages=ASK, options={"num_predict": 6, "temperature": 0})
    assert answer.message.content and answer.eval_count == 6
    a = anthropic.Anthropic(base_url=cluster.front.url, api_key="none", max_retries=0)
    message = a.messages.create(model="remote", max_tokens=6, messages=ASK)  # type: ignore[arg-type]
    assert message.content[0].text and message.stop_reason == "max_tokens"  # type: ignore[union-attr]
    with a.messages.stream(model="remote", max_tokens=6, messages=ASK) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
    assert text
    # Counted by the upstream's /tokenize, as the upstream itself counts it.
    counted = a.messages.count_tokens(model="remote", messages=ASK)  # type: ignore[arg-type]
    direct = httpx.post(
        f"{cluster.one.url}/v1/messages/count_tokens", json={"model": STARTER_ID, "messages": ASK}
    ).json()
    assert counted.input_tokens == direct["input_tokens"]


def test_the_models_configured_system_prompt_goes_upstream(cluster: Cluster) -> None:
    front = cluster.front.client()
    plain = front.chat.completions.create(model="remote", messages=ASK, max_tokens=1)  # type: ignore[arg-type]
    briefed = front.chat.completions.create(model="briefed", messages=ASK, max_tokens=1)  # type: ignore[arg-type]
    assert plain.usage is not None and briefed.usage is not None
    assert briefed.usage.prompt_tokens > plain.usage.prompt_tokens + 40  # the upstream read it
    a = anthropic.Anthropic(base_url=cluster.front.url, api_key="none", max_retries=0)
    counted = a.messages.count_tokens(model="briefed", messages=ASK)  # type: ignore[arg-type]
    assert counted.input_tokens == briefed.usage.prompt_tokens


def test_tokenize_and_detokenize_on_the_real_model(cluster: Cluster) -> None:
    """What a Hearth in front counts with (vLLM's routes): a round trip, and bad input as
    400s in OpenAI's shape, after which the server answers as before."""
    url = cluster.one.url
    ids = httpx.post(f"{url}/tokenize", json={"model": STARTER_ID, "prompt": "Hello there"}).json()
    assert ids["count"] == len(ids["tokens"]) > 0 and ids["max_model_len"] == 8192
    back = httpx.post(f"{url}/detokenize", json={"model": STARTER_ID, "tokens": ids["tokens"]})
    assert "Hello there" in back.json()["prompt"]
    for path, body in (
        ("/detokenize", {"model": STARTER_ID, "tokens": [10**9]}),
        ("/detokenize", {"model": STARTER_ID, "tokens": "1 2"}),
        ("/tokenize", {"model": STARTER_ID}),
        ("/tokenize", {"model": STARTER_ID, "messages": [{"role": "wizard", "content": "x"}]}),
    ):
        bad = httpx.post(url + path, json=body)
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["type"] == "invalid_request_error"
    again = httpx.post(f"{url}/tokenize", json={"model": STARTER_ID, "prompt": "Hello there"})
    assert again.json()["tokens"] == ids["tokens"]


def test_the_upstreams_errors_in_each_apis_shape(cluster: Cluster) -> None:
    front = cluster.front.client()
    with pytest.raises(openai.BadRequestError) as refused:
        front.chat.completions.create(model="remote", messages=ASK, max_tokens=100_000)  # type: ignore[arg-type]
    assert refused.value.code == "context_length_exceeded"
    assert "8192" in refused.value.message
    with pytest.raises(openai.APIStatusError) as wrong:
        chat_text(front, "wrong-name")
    assert wrong.value.status_code == 502 and "no-such-model" in wrong.value.message
    a = anthropic.Anthropic(base_url=cluster.front.url, api_key="none", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as too_long:
        a.messages.create(model="remote", max_tokens=10_000, messages=ASK)  # type: ignore[arg-type]
    assert too_long.value.body["type"] == "error"  # type: ignore[index]
    bad = httpx.post(
        f"{cluster.front.url}/api/generate",
        json={"model": "remote", "prompt": "hi", "context": [1, 2, 3], "stream": False},
    )
    assert bad.status_code == 400 and "token ids" in bad.json()["error"]
    gone = httpx.request("DELETE", f"{cluster.front.url}/api/delete", json={"model": "remote"})
    assert gone.status_code == 400 and "upstream" in gone.json()["error"]


def test_a_hanging_upstream_hits_its_timeout(cluster: Cluster) -> None:
    front = cluster.front.client()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as hung:
        front.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
    assert hung.value.status_code == 504 and hung.value.code == "upstream_timeout"
    assert time.monotonic() - started < 10
    stream = front.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "stall"}], max_tokens=4, stream=True
    )
    got = []
    with pytest.raises(openai.APIError, match="sent nothing"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert "Hel" in got  # what came before the silence was passed on


def test_a_client_that_leaves_ends_the_upstream_request(cluster: Cluster) -> None:
    stream = long_stream(cluster.front.client(), "remote")
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        slots = cluster.one.status()["models"][0]["slots"]
        if all(s["state"] == "idle" for s in slots):
            break
        time.sleep(0.1)
    assert all(s["state"] == "idle" for s in slots), slots


def test_max_concurrency_queues_then_refuses(cluster: Cluster) -> None:
    front = cluster.front.client()
    first = long_stream(front, "narrow")
    next(iter(first))
    waiting: list[Any] = []
    queued = threading.Thread(target=lambda: waiting.append(long_stream(front, "narrow")))
    queued.start()
    time.sleep(1.0)
    assert not waiting  # no answer yet: it waits for the one slot
    with pytest.raises(openai.APIStatusError) as full:
        chat_text(front, "narrow")
    assert full.value.status_code == 503 and full.value.code == "queue_full"
    assert full.value.response.headers["retry-after"] == "1"
    first.close()
    queued.join(30)
    second = waiting[0]
    assert next(iter(second)).choices  # the slot passed on: the queued stream runs
    second.close()


def test_metrics_and_the_request_log_cover_upstream_models(cluster: Cluster) -> None:
    chat_text(cluster.front.client(), "remote")
    metrics = httpx.get(f"{cluster.front.url}/metrics").text
    assert f'hearth_upstream_up{{model="remote",url="{cluster.one.url}"}} 1.0' in metrics
    assert 'hearth_upstream_latency_seconds_count{model="remote"' in metrics
    assert 'hearth_generated_tokens_total{model="remote"}' in metrics
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = httpx.get(f"{cluster.front.url}/api/requests", params={"model": "remote"}).json()
        if rows["data"]:
            break
        time.sleep(0.2)
    row = rows["data"][0]
    assert row["model"] == "remote" and row["status"] == 200 and row["completion_tokens"] == 16


def test_killed_mid_stream_then_failover(cluster: Cluster) -> None:
    """Last in the module: it kills the second upstream."""
    front = cluster.front.client()
    stream = long_stream(front, "solo")
    got = 0
    with pytest.raises(openai.APIError, match="broke off"):
        for _ in stream:
            got += 1
            if got == 3:
                cluster.two.process.send_signal(signal.SIGKILL)
    assert got >= 3
    # `pair` has both: until the health check marks the dead one down, a connection refused
    # is retried on the other; after that, the dead one is not tried first at all.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = cluster.front.status()
        pair = [m for m in status["models"] if m["id"] == "pair"]
        ups = {u["url"]: u["up"] for u in pair[0]["upstreams"]} if pair else {}
        if ups.get(cluster.two.url) is False:
            break
        chat_text(front, "pair")  # loads `pair`, and is itself served
        time.sleep(0.5)
    assert ups == {cluster.one.url: True, cluster.two.url: False}
    answers = [chat_text(front, "pair") for _ in range(6)]
    assert all(answers)

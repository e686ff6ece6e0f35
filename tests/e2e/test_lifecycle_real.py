"""Model lifecycle on real models: SmolLM2 and Gemma 3 270M in one server, LRU eviction, idle
unloading, per-model settings, and the CLI against a running server."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, RunningServer, hearth, start_server
from tests.ggufs import corrupt, split_gguf_file, write_projector, write_tiny_gguf

pytestmark = pytest.mark.e2e

GEMMA_ID = "gemma-3-270m-q4_k_m"
COPY_ID = f"copy/{STARTER_ID}"


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, starter_model: Path, gemma3_model: Path
) -> Path:
    """Both real models, linked into a models directory (links are followed for reading),
    plus a second link to the starter in a sub-folder: a third id."""
    root = tmp_path_factory.mktemp("two") / "models"
    (root / "copy").mkdir(parents=True)
    (root / starter_model.name).symlink_to(starter_model)
    (root / gemma3_model.name).symlink_to(gemma3_model)
    (root / "copy" / starter_model.name).symlink_to(starter_model)
    corrupt(write_tiny_gguf(root / "broken.gguf"), "tensor_past_end")
    return root


@pytest.fixture
def serve(tmp_path: Path, models: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def make(*args: str, config: Path | None = None) -> RunningServer:
        server = start_server(
            tmp_path, None, "--parallel", "2", "--ctx-size", "512", *args,
            models_dir=models, config=config,
        )  # fmt: skip
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def ask(server: RunningServer, model: str, **extra: Any) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)


def loaded(server: RunningServer) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{server.url}/api/ps", timeout=10)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.2)


def test_both_real_models_loaded_at_once_and_answering(
    serve: Callable[..., RunningServer],
) -> None:
    server = serve("--max-loaded-models", "2")
    for model in (STARTER_ID, GEMMA_ID):
        r = ask(server, model)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model
        assert r.json()["choices"][0]["message"]["content"].strip()
    both = loaded(server)
    assert set(both) == {STARTER_ID, GEMMA_ID}
    assert both[GEMMA_ID]["details"]["family"] == "gemma3"
    assert both[STARTER_ID]["details"]["quantization_level"] == "Q4_1"
    assert all(m["size"] > 50 * 2**20 for m in both.values())
    statuses = {
        m["id"]: m["hearth"]["status"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]
    }
    assert statuses == {
        STARTER_ID: "loaded",
        GEMMA_ID: "loaded",
        COPY_ID: "available",
        "broken": "invalid",
    }
    bad = ask(server, "broken")
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_model_file"
    assert "ends at byte" in bad.json()["error"]["message"]
    # Talking to them in turn needs no reload.
    started = both[STARTER_ID]["loaded_at"]
    assert ask(server, STARTER_ID).status_code == 200
    assert ask(server, GEMMA_ID).status_code == 200
    assert loaded(server)[STARTER_ID]["loaded_at"] == started
    # A third model evicts the least recently used one (the starter, asked before Gemma).
    assert ask(server, COPY_ID).status_code == 200
    assert set(loaded(server)) == {GEMMA_ID, COPY_ID}


def test_lru_eviction_with_max_loaded_models_1(serve: Callable[..., RunningServer]) -> None:
    server = serve("--max-loaded-models", "1")
    for model in (STARTER_ID, GEMMA_ID, STARTER_ID):
        r = ask(server, model)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip()
        assert list(loaded(server)) == [model]
    assert "unloading gemma-3-270m-q4_k_m (to make room for" in server.output


def test_idle_models_unload_after_their_keep_alive(serve: Callable[..., RunningServer]) -> None:
    server = serve("--keep-alive", "2s")
    assert ask(server, STARTER_ID).status_code == 200
    entry = loaded(server)[STARTER_ID]
    assert entry["keep_alive"] == "2s" and entry["expires_at"] is not None
    wait_until(lambda: STARTER_ID not in loaded(server), "the idle starter to unload")
    model = httpx.get(f"{server.url}/v1/models/{STARTER_ID}").json()
    assert model["hearth"]["status"] == "available"
    # keep_alive 0 in a request: gone as soon as it is answered.
    assert ask(server, GEMMA_ID, keep_alive=0).status_code == 200
    wait_until(lambda: GEMMA_ID not in loaded(server), "gemma to unload at once", seconds=30)
    # A negative keep_alive keeps it past the server's 2 s.
    assert ask(server, STARTER_ID, keep_alive=-1).status_code == 200
    time.sleep(3)
    assert loaded(server)[STARTER_ID]["keep_alive"] == "forever"
    assert ask(server, STARTER_ID).status_code == 200  # and it answers again


def test_per_model_settings_reach_the_real_engine(
    serve: Callable[..., RunningServer], tmp_path: Path, starter_model: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[[models]]
id = "tiny-chat"
path = "{starter_model}"
aliases = ["tiny"]
ctx_size = 256
parallel = 3
max_output_tokens = 6
keep_alive = -1
sampling = {{ temperature = 0.0 }}
"""
    )
    server = serve(config=config)
    first = ask(server, "tiny", max_tokens=None, seed=1, temperature=None)
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "tiny-chat"
    assert first.json()["usage"]["completion_tokens"] <= 6
    second = ask(server, "tiny-chat", max_tokens=None, seed=2, temperature=None)
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    too_many = ask(server, "tiny", max_tokens=50)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "max_tokens"
    (status,) = httpx.get(f"{server.url}/status").json()["models"]
    assert (status["context_window"], status["parallel"]) == (256, 3)
    model = httpx.get(f"{server.url}/v1/models/tiny").json()
    assert (model["context_window"], model["max_output_tokens"]) == (256, 6)
    assert loaded(server)["tiny-chat"]["keep_alive"] == "forever"


def test_cli_load_ps_unload_rm_against_a_running_server(
    serve: Callable[..., RunningServer], models: Path, starter_model: Path
) -> None:
    (models / "extra.gguf").symlink_to(starter_model)
    server = serve()
    env = {"HEARTH_URL": server.url}
    out = hearth("load", STARTER_ID, "--keep-alive", "10m", **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"loaded {STARTER_ID} (")
    out = hearth("ps", **env)
    assert STARTER_ID in out.stdout and "MiB" in out.stdout and "CPU" in out.stdout
    assert "in 10 min" in out.stdout or "in 9 min" in out.stdout
    out = hearth("unload", STARTER_ID, **env)
    assert out.stdout.strip() == f"{STARTER_ID} unloaded"
    assert loaded(server) == {}
    out = hearth("load", "nope", **env)
    assert out.returncode == 1 and 'model "nope" not found' in out.stderr
    assert ask(server, "extra").status_code == 200
    out = hearth("rm", "extra", **env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "deleted extra (extra.gguf)"
    assert not (models / "extra.gguf").is_symlink() and starter_model.exists()
    assert "extra" not in loaded(server)
    out = hearth("ps", "--url", "http://127.0.0.1:9")
    assert out.returncode == 1 and "no Hearth server" in out.stderr


def test_split_model_loads_from_its_first_part(tmp_path: Path, starter_model: Path) -> None:
    models = tmp_path / "split-models"
    models.mkdir()
    split_gguf_file(starter_model, models, "SmolLM2-Split", parts=2)
    write_projector(models / "mmproj-SmolLM2-Split-f16.gguf")
    server = start_server(tmp_path, None, "--parallel", "1", models_dir=models)
    try:
        (listed,) = httpx.get(f"{server.url}/v1/models").json()["data"]
        assert listed["id"] == "smollm2-split"
        assert listed["hearth"]["files"] == 2
        assert listed["hearth"]["projector"] == "mmproj-SmolLM2-Split-f16.gguf"
        r = ask(server, "smollm2-split")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip()
    finally:
        server.stop()


def test_a_file_truncated_after_the_scan_is_refused_and_the_server_keeps_serving(
    tmp_path: Path, starter_model: Path
) -> None:
    models = tmp_path / "changing-models"
    models.mkdir()
    victim = models / "victim.gguf"
    shutil.copyfile(starter_model, victim)
    (models / starter_model.name).symlink_to(starter_model)
    server = start_server(tmp_path, None, "--parallel", "1", "--ctx-size", "512", models_dir=models)
    try:
        listed = httpx.get(f"{server.url}/v1/models/victim").json()["hearth"]
        assert listed["status"] == "available" and listed["error"] is None
        os.truncate(victim, victim.stat().st_size // 2)  # cut mid-tensor after the scan
        bad = ask(server, "victim")
        assert bad.status_code == 422, bad.text
        error = bad.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_model_file", "model")
        assert "model 'victim' is not usable" in error["message"]
        assert "truncated or corrupt" in error["message"]
        listed = httpx.get(f"{server.url}/v1/models/victim").json()["hearth"]
        assert listed["status"] == "invalid" and "truncated or corrupt" in listed["error"]
        assert server.process.poll() is None, server.output
        good = ask(server, STARTER_ID)
        assert good.status_code == 200, good.text
        assert good.json()["choices"][0]["message"]["content"].strip()
        assert list(loaded(server)) == [STARTER_ID]
    finally:
        server.stop()

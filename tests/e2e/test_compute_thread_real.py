"""All llama.cpp compute of a process runs on one thread (an idle OpenMP team steals a busy
one's cores): chat, embeddings and a second model, in both isolation modes, on the real model."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import STARTER_ID, start_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_one_decode_thread_per_process(tmp_path: Path, starter_model: Path, isolation: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(starter_model, models / "second.gguf")
    server = start_server(
        tmp_path, starter_model, "--engine-isolation", isolation, models_dir=models
    )
    try:
        chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        for model in (STARTER_ID, "second", STARTER_ID):
            r = httpx.post(
                f"{server.url}/v1/chat/completions", json={"model": model, **chat}, timeout=60
            )
            assert r.status_code == 200, r.text
            r = httpx.post(
                f"{server.url}/v1/embeddings",
                json={"model": model, "input": ["one text", "another text"]},
                timeout=60,
            )
            assert r.status_code == 200, r.text
        status = server.status()
        assert status["engine_isolation"] == isolation
        by_id = {m["id"]: m for m in status["models"]}
        assert set(by_id) == {STARTER_ID, "second"}
        for m in by_id.values():
            assert len(m["decode_threads"]) == 1, m
            assert m["embedding_decodes"] >= 1
            assert m["decode_steps"] >= 1
        pids = {m["pid"] for m in by_id.values()}
        threads = {m["decode_threads"][0] for m in by_id.values()}
        if isolation == "process":
            assert len(pids) == 2 and status["pid"] not in pids
        else:  # both models computed on the server's one compute thread
            assert pids == {status["pid"]} and len(threads) == 1
    finally:
        server.stop()

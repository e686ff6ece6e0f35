"""`hearth pull` and `hearth import` as a user runs them, on the real starter model: a download
cut mid-way and resumed, a wrong checksum rejected, the pulled model served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.models.packaged import STARTER, sha256_file
from tests.e2e.conftest import STARTER_ID, hearth, start_server
from tests.ggufs import corrupt, write_tiny_gguf
from tests.hub import FakeHub, HubServer

pytestmark = pytest.mark.e2e

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with HubServer() as running:
        yield running


def test_pull_cut_mid_way_resumes_then_serves(
    hub: FakeHub, starter_model: Path, tmp_path: Path
) -> None:
    half = starter_model.stat().st_size // 2
    hub.add(REPO, starter_model.name, starter_model, cut_after=half)
    models = tmp_path / "models"
    out = hearth("pull", f"{REPO}:Q4_1", "--models-dir", str(models), HF_ENDPOINT=hub.url)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.strip().endswith(f"pulled {STARTER_ID}")
    assert "retrying" in out.stdout and "verifying sha256 digest" in out.stdout
    first, second = hub.ranges(starter_model.name)
    assert first is None and second is not None
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) <= half
    pulled = models / starter_model.name
    assert sha256_file(pulled) == STARTER.sha256
    assert sorted(p.name for p in models.iterdir()) == [starter_model.name]

    server = start_server(tmp_path, None, "--parallel", "1", models_dir=models)
    try:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": STARTER_ID,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 5,
            },
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip()
    finally:
        server.stop()


def test_pull_with_a_wrong_checksum_is_rejected(
    hub: FakeHub, starter_model: Path, tmp_path: Path
) -> None:
    hub.add(REPO, starter_model.name, starter_model, advertised_sha256="0" * 64)
    models = tmp_path / "models"
    out = hearth(
        "pull", f"{REPO}/{starter_model.name}", "--models-dir", str(models), HF_ENDPOINT=hub.url
    )
    assert out.returncode == 1
    assert f"expected {'0' * 64}" in out.stderr and "discarded" in out.stderr
    assert list(models.iterdir()) == []


def test_import_copies_or_links_validated_files(starter_model: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    into = ("--models-dir", str(models))
    out = hearth("import", str(starter_model), "--name", "mine/starter", *into)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imported mine/starter  (starter.gguf)"
    copied = models / "mine" / "starter.gguf"
    assert not copied.is_symlink() and copied.stat().st_size == starter_model.stat().st_size
    out = hearth("import", str(starter_model), "--link", *into)
    assert out.returncode == 0, out.stderr
    assert (models / starter_model.name).resolve() == starter_model.resolve()
    again = hearth("import", str(starter_model), "--link", *into)
    assert again.returncode == 1 and "never writes through" in again.stderr
    again = hearth("import", str(starter_model), "--name", "mine/starter", *into)
    assert again.returncode == 1 and "already in the models directory" in again.stderr

    broken = corrupt(write_tiny_gguf(tmp_path / "broken.gguf"), "truncated")
    out = hearth("import", str(broken), "--models-dir", str(models))
    assert out.returncode == 1 and "truncated or corrupt" in out.stderr
    out = hearth("import", str(starter_model), "--name", "../escape", "--models-dir", str(models))
    assert out.returncode == 1 and "unsafe name" in out.stderr
    assert not (tmp_path / "escape.gguf").exists()
    assert sorted(str(p.relative_to(models)) for p in models.rglob("*")) == [
        starter_model.name,
        "mine",
        "mine/starter.gguf",
    ]
    listing = hearth("models", "--models-dir", str(models))
    assert "mine/starter" in listing.stdout and STARTER_ID in listing.stdout


def test_pull_over_the_api_cancelled_by_disconnect_then_resumed(
    hub: FakeHub, starter_model: Path, tmp_path: Path
) -> None:
    hub.add(REPO, starter_model.name, starter_model, stall_after=20 * 2**20)
    hub.stall_seconds = 3
    models = tmp_path / "models"
    config = tmp_path / "config.toml"
    config.write_text(f'hf_endpoint = "{hub.url}"\n')
    server = start_server(tmp_path, None, "--parallel", "1", models_dir=models, config=config)
    try:
        spec = {"model": f"{REPO}/{starter_model.name}"}
        with httpx.stream("POST", f"{server.url}/api/pull", json=spec, timeout=60) as r:
            assert r.headers["content-type"] == "application/x-ndjson"
            for line in r.iter_lines():
                event = json.loads(line)
                if event.get("completed"):
                    break  # leaving the block closes the connection: the pull is cancelled
        partial = models / f"{starter_model.name}.partial"
        lock = models / f"{starter_model.name}.lock"
        deadline = time.monotonic() + 30
        while lock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not lock.exists(), server.output
        kept = partial.stat().st_size
        assert 0 < kept < starter_model.stat().st_size
        assert not (models / starter_model.name).exists()
        assert httpx.get(f"{server.url}/v1/models").json()["data"] == []

        r = httpx.post(f"{server.url}/api/pull", json={**spec, "stream": False}, timeout=300)
        assert r.json() == {"status": "success", "model": STARTER_ID}
        assert hub.ranges(starter_model.name)[-1] == f"bytes={kept}-"  # resumed, not restarted
        assert sha256_file(models / starter_model.name) == STARTER.sha256
        chat = {
            "model": STARTER_ID,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
        }
        r = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=120)
        assert r.status_code == 200, r.text
    finally:
        server.stop()

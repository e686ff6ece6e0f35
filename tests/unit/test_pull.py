"""Pulls against a local stand-in for the hub: resolution, resume, checks, path safety."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.errors import (
    AlreadyExists,
    Conflict,
    DownloadError,
    InsufficientStorage,
    InvalidModelFile,
    InvalidRequestError,
    RemoteNotFound,
    UnsafePath,
)
from hearth.models.download import DownloadPolicy, Progress
from hearth.models.hub import parse_spec
from hearth.models.pull import plan_pull, run_pull
from hearth.models.registry import Registry
from tests.ggufs import write_split_gguf, write_tiny_gguf
from tests.hub import FakeHub, HubServer

FAST = DownloadPolicy(retries=3, backoff=0.01, stall_timeout=0.5)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with HubServer() as running:
        yield running


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


def gguf_bytes(tmp_path: Path, rows: int = 4, name: str = "src.gguf") -> bytes:
    return write_tiny_gguf(tmp_path / "src" / name, rows=rows).read_bytes()


def pull(spec: str, models: Path, hub: FakeHub, **kw: Any) -> tuple[str, list[Progress]]:
    policy = kw.pop("policy", FAST)

    async def go() -> tuple[str, list[Progress]]:
        plan = await plan_pull(spec, models, endpoint=hub.url, **kw)
        events = [e async for e in run_pull(plan, policy)]
        return plan.model_id, events

    return asyncio.run(go())


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.rglob("*")) if models.exists() else []


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("owner/repo/model.Q4_K_M.gguf", "file"),
        ("owner/repo/sub/dir/model.gguf", "file"),
        ("hf.co/owner/repo:Q4_K_M", "quant"),
        ("owner/repo:q8_0", "quant"),
        ("https://example.test/x.gguf", "url"),
    ],
)
def test_spec_kinds(spec: str, kind: str) -> None:
    assert parse_spec(spec).kind == kind


@pytest.mark.parametrize(
    "spec",
    ["owner/repo", "owner/repo/../../x.gguf", "owner/repo/x.bin", "a b/c", "/abs/x.gguf", "x\x00"],
)
def test_bad_specs(spec: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_spec(spec)


def test_pull_a_file_checks_the_sha256_the_hub_gives(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = gguf_bytes(tmp_path)
    hub.add("owner/repo", "sub/Tiny-Q4_K_M.gguf", data)
    model_id, events = pull("owner/repo/sub/Tiny-Q4_K_M.gguf", models, hub)
    assert model_id == "tiny-q4_k_m"
    assert (models / "Tiny-Q4_K_M.gguf").read_bytes() == data
    statuses = [e.status for e in events]
    assert statuses[-3:] == ["verifying sha256 digest", "validating", "success"]
    assert events[-3].digest == hashlib.sha256(data).hexdigest()
    assert leftovers(models) == ["Tiny-Q4_K_M.gguf"]
    assert [e.id for e in Registry(models).list()] == ["tiny-q4_k_m"]
    # Pulling it again finds it in place.
    _, again = pull("owner/repo/sub/Tiny-Q4_K_M.gguf", models, hub)
    assert [e.status for e in again] == ["already present", "success"]


def test_quantization_is_resolved_through_the_file_list(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    for name in ["Model-Q4_K_M.gguf", "Model-Q8_0.gguf", "mmproj-Model-Q4_K_M.gguf"]:
        hub.add("owner/repo", name, gguf_bytes(tmp_path, name=name))
    hub.add("owner/repo", "README.md", b"# hi")
    assert pull("owner/repo:q8_0", models, hub)[0] == "model-q8_0"
    assert pull("owner/repo:Q4_K_M", models, hub)[0] == "model-q4_k_m"
    with pytest.raises(RemoteNotFound, match="Q4_K_M, Q8_0"):
        pull("owner/repo:Q5_K_M", models, hub)
    with pytest.raises(RemoteNotFound):
        pull("owner/missing:Q4_K_M", models, hub)
    hub.add("owner/repo", "other/Model-Q8_0.gguf", gguf_bytes(tmp_path))
    with pytest.raises(InvalidRequestError, match="matches several"):
        pull("owner/repo:Q8_0", models, hub)


def test_split_model_is_pulled_whole(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    for part in write_split_gguf(tmp_path / "src" / "Big-Q4_K_M.gguf", parts=3):
        hub.add("owner/repo", f"Q4_K_M/{part.name}", part.read_bytes())
    assert pull("owner/repo:Q4_K_M", models, hub)[0] == "big-q4_k_m"
    (entry,) = Registry(models).list()
    assert entry.status == "available" and len(entry.parts) == 3
    shutil.rmtree(models)
    assert pull("owner/repo/Q4_K_M/Big-Q4_K_M-00001-of-00003.gguf", models, hub)[0] == "big-q4_k_m"


def test_a_cut_connection_resumes_with_a_range(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    data = gguf_bytes(tmp_path, rows=4096)  # 512 KiB
    hub.add("owner/repo", "cut.gguf", data, cut_after=200_000)
    _, events = pull("owner/repo/cut.gguf", models, hub)
    first, second = hub.ranges("cut.gguf")
    assert first is None and second is not None
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) <= 200_000
    assert any(e.status.startswith("retrying") for e in events)
    assert (models / "cut.gguf").read_bytes() == data


def test_a_stall_reconnects_and_resumes(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    data = gguf_bytes(tmp_path, rows=4096)
    hub.add("owner/repo", "slow.gguf", data, stall_after=100_000)
    pull("owner/repo/slow.gguf", models, hub)
    first, second = hub.ranges("slow.gguf")
    assert first is None and second is not None
    assert 0 < int(second.removeprefix("bytes=").rstrip("-")) <= 100_000
    assert (models / "slow.gguf").read_bytes() == data


def test_a_server_without_ranges_starts_over(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    data = gguf_bytes(tmp_path, rows=4096)
    hub.range_support = False
    hub.add("owner/repo", "norange.gguf", data, cut_after=200_000)
    pull("owner/repo/norange.gguf", models, hub)
    assert (models / "norange.gguf").read_bytes() == data


def test_a_wrong_checksum_is_rejected_and_leaves_nothing(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    hub.add("owner/repo", "bad.gguf", gguf_bytes(tmp_path), advertised_sha256="0" * 64)
    with pytest.raises(DownloadError) as err:
        pull("owner/repo/bad.gguf", models, hub)
    assert err.value.code == "checksum_mismatch"
    assert leftovers(models) == []


def test_an_invalid_download_is_rejected_and_leaves_nothing(hub: FakeHub, models: Path) -> None:
    hub.add_file("junk.gguf", b"GGUF" + bytes(100))
    with pytest.raises(InvalidModelFile, match="not a usable GGUF"):
        pull(f"{hub.url}/files/junk.gguf", models, hub)
    assert leftovers(models) == []


def test_cancel_leaves_no_model_and_the_next_pull_resumes(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    data = gguf_bytes(tmp_path, rows=8192)  # 1 MiB
    hub.add("owner/repo", "big.gguf", data)

    async def cancel_after_first_bytes() -> None:
        plan = await plan_pull("owner/repo/big.gguf", models, endpoint=hub.url)
        events = run_pull(plan, FAST)
        async for event in events:
            if event.status == "downloading":
                break
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(cancel_after_first_bytes())
    assert not (models / "big.gguf").exists()
    assert (models / "big.gguf.partial").exists()
    assert [e.id for e in Registry(models).list()] == []
    pull("owner/repo/big.gguf", models, hub)
    second = hub.ranges("big.gguf")[-1]
    assert second is not None and second.startswith("bytes=")
    assert (models / "big.gguf").read_bytes() == data
    assert leftovers(models) == ["big.gguf"]


def test_two_pulls_of_one_file_do_not_interleave(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    hub.add("owner/repo", "one.gguf", gguf_bytes(tmp_path, rows=4096), stall_after=10_000)
    hub.stall_seconds = 1.0
    slow = DownloadPolicy(stall_timeout=5)

    async def both() -> None:
        first_plan = await plan_pull("owner/repo/one.gguf", models, endpoint=hub.url)
        first = asyncio.create_task(_drain(run_pull(first_plan, slow)))
        await asyncio.sleep(0.3)
        second_plan = await plan_pull("owner/repo/one.gguf", models, endpoint=hub.url)
        with pytest.raises(Conflict, match="already being downloaded"):
            await _drain(run_pull(second_plan, slow))
        await first

    asyncio.run(both())
    assert (models / "one.gguf").exists()


async def _drain(events: Any) -> None:
    async for _ in events:
        pass


def test_plain_url_and_names(hub: FakeHub, models: Path, tmp_path: Path) -> None:
    data = gguf_bytes(tmp_path)
    hub.add_file("x.gguf", data)
    sha = hashlib.sha256(data).hexdigest()
    assert pull(f"{hub.url}/files/x.gguf", models, hub, sha256=sha)[0] == "x"
    assert pull(f"{hub.url}/files/x.gguf", models, hub, name="mine/y.gguf")[0] == "mine/y"
    with pytest.raises(DownloadError, match="expected"):
        pull(f"{hub.url}/files/x.gguf", models, hub, name="z.gguf", sha256="1" * 64)
    for url, error in [
        (f"{hub.url}/files/..%2F..%2Fevil.gguf", UnsafePath),
        (f"{hub.url}/files/%2e%2e%2fevil.gguf", UnsafePath),
        (f"{hub.url}/files/evil%00.gguf", UnsafePath),
        (f"{hub.url}/files/noext", InvalidRequestError),
    ]:
        with pytest.raises(error):
            pull(url, models, hub)
    for name in ["../evil.gguf", "/tmp/evil.gguf", "a\\b.gguf", "..%2Fevil.gguf"]:
        with pytest.raises(UnsafePath):
            pull(f"{hub.url}/files/x.gguf", models, hub, name=name)
    assert not (tmp_path / "evil.gguf").exists()
    assert leftovers(models) == ["mine", "x.gguf", "y.gguf"]


def test_downloads_never_write_through_a_symlink(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    hub.add_file("x.gguf", gguf_bytes(tmp_path))
    outside = tmp_path / "outside"
    outside.mkdir()
    models.mkdir()
    (models / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath):
        pull(f"{hub.url}/files/x.gguf", models, hub, name="linked/x.gguf")
    (models / "x.gguf.partial").symlink_to(outside / "victim")  # stale links: removed
    (models / "x.gguf.partial.json").symlink_to(outside / "victim.json")
    pull(f"{hub.url}/files/x.gguf", models, hub)
    assert list(outside.iterdir()) == []
    assert (models / "x.gguf").is_file() and not (models / "x.gguf").is_symlink()


def test_existing_different_file_is_not_overwritten(
    hub: FakeHub, models: Path, tmp_path: Path
) -> None:
    hub.add_file("x.gguf", gguf_bytes(tmp_path))
    models.mkdir()
    (models / "x.gguf").write_bytes(b"mine")
    with pytest.raises(AlreadyExists):
        pull(f"{hub.url}/files/x.gguf", models, hub)
    assert (models / "x.gguf").read_bytes() == b"mine"


def test_free_disk_is_checked_before_starting(
    hub: FakeHub, models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add("owner/repo", "x.gguf", gguf_bytes(tmp_path))
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1))  # type: ignore[attr-defined]
    with pytest.raises(InsufficientStorage):
        pull("owner/repo/x.gguf", models, hub)
    assert hub.ranges("x.gguf") == []

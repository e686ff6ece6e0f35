"""Model lifecycle with a fake engine: lazy shared loads, leases, keep-alive, LRU, budgets."""

from __future__ import annotations

import asyncio
import math
import os
import threading
from pathlib import Path

import pytest

from hearth.errors import InvalidModelFile, NoCapacity
from hearth.models.manager import ModelManager, Policy
from hearth.models.registry import ModelEntry, Registry
from tests.fakes import FakeEngine
from tests.ggufs import write_tiny_gguf

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def manager(tmp_path: Path, n: int = 3, **policy: float | int | None) -> ModelManager:
    for i in range(n):
        write_tiny_gguf(tmp_path / f"m{i}.gguf")
    engines: list[FakeEngine] = []

    def factory(entry: ModelEntry) -> FakeEngine:
        engine = FakeEngine(entry)
        engines.append(engine)
        return engine

    mgr = ModelManager(Registry(tmp_path), factory, policy=Policy(**policy))  # type: ignore[arg-type]
    mgr.engines = engines  # type: ignore[attr-defined]
    return mgr


async def until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_concurrent_first_requests_share_one_load(tmp_path: Path) -> None:
    for i in range(1):
        write_tiny_gguf(tmp_path / f"m{i}.gguf")
    release = threading.Event()
    calls = []

    def slow(entry: ModelEntry) -> FakeEngine:
        calls.append(entry.id)
        release.wait(5)
        return FakeEngine(entry)

    mgr = ModelManager(Registry(tmp_path), slow)
    tasks = [asyncio.create_task(mgr.get("m0")) for _ in range(5)]
    await until(lambda: mgr.is_loading("m0"))
    assert mgr.loading_ids() == ["m0"]
    release.set()
    models = await asyncio.gather(*tasks)
    assert calls == ["m0"] and all(m is models[0] for m in models)
    await mgr.close()


async def test_a_leased_model_stays_then_keep_alive_zero_unloads_it(tmp_path: Path) -> None:
    mgr = manager(tmp_path)
    async with mgr.use("m0", keep_alive=0) as lease:
        assert mgr.active("m0") == 1
        await asyncio.sleep(0.05)
        assert mgr.is_loaded("m0")
        assert lease.model.expires_at is None
    await until(lambda: not mgr.is_loaded("m0"))
    assert mgr.engines[0].closed  # type: ignore[attr-defined]


async def test_idle_timer_unloads_and_a_new_request_cancels_it(tmp_path: Path) -> None:
    mgr = manager(tmp_path, keep_alive=0.3)
    await mgr.get("m0")
    loaded = mgr.loaded()[0]
    assert loaded.expires_at is not None
    async with mgr.use("m0"):  # back in use: the timer stops
        assert loaded.expires_at is None
        await asyncio.sleep(0.5)
        assert mgr.is_loaded("m0")
    await until(lambda: not mgr.is_loaded("m0"))


async def test_negative_keep_alive_keeps_it_for_good(tmp_path: Path) -> None:
    mgr = manager(tmp_path, keep_alive=0.05)
    await mgr.load("m0", keep_alive=math.inf)
    await asyncio.sleep(0.2)
    assert mgr.is_loaded("m0") and mgr.loaded()[0].expires_at is None
    await mgr.close()


async def test_lru_idle_model_is_evicted_first(tmp_path: Path) -> None:
    mgr = manager(tmp_path, max_loaded=2)
    await mgr.get("m0")
    await mgr.get("m1")
    await mgr.get("m0")  # m1 is now the least recently used
    await mgr.get("m2")
    assert sorted(m.entry.id for m in mgr.loaded()) == ["m0", "m2"]
    await mgr.close()


async def test_busy_model_is_never_evicted_the_load_waits(tmp_path: Path) -> None:
    mgr = manager(tmp_path, max_loaded=1, wait_timeout=5)
    lease = await mgr.acquire("m0")
    waiting = asyncio.create_task(mgr.get("m1"))
    await asyncio.sleep(0.2)
    assert not waiting.done() and mgr.is_loaded("m0")
    lease.release()
    await waiting
    assert [m.entry.id for m in mgr.loaded()] == ["m1"]
    await mgr.close()


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 256)


async def test_a_file_that_goes_bad_while_its_load_waits_evicts_nothing(tmp_path: Path) -> None:
    mgr = manager(tmp_path, max_loaded=1, wait_timeout=5)
    assert mgr.registry.get("m1").status == "available"
    lease = await mgr.acquire("m0")
    waiting = asyncio.create_task(mgr.get("m1"))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    truncate(tmp_path / "m1.gguf")
    lease.release()
    with pytest.raises(InvalidModelFile, match="truncated or corrupt") as err:
        await waiting
    assert err.value.status_code == 422
    assert [m.entry.id for m in mgr.loaded()] == ["m0"]  # not evicted for a broken file
    assert [e.info.id for e in mgr.engines] == ["m0"]  # type: ignore[attr-defined]
    assert mgr.registry.get("m1").status == "invalid" and mgr.active("m1") == 0
    await mgr.close()


async def test_files_are_checked_again_right_before_the_engine_opens_them(tmp_path: Path) -> None:
    """The file goes bad while the evicted model closes, after the room was planned."""
    for i in range(2):
        write_tiny_gguf(tmp_path / f"m{i}.gguf")
    opened: list[str] = []

    class TruncatesOnClose(FakeEngine):
        def close(self) -> None:
            truncate(tmp_path / "m1.gguf")
            super().close()

    def factory(entry: ModelEntry) -> FakeEngine:
        opened.append(entry.id)
        return TruncatesOnClose(entry)

    mgr = ModelManager(Registry(tmp_path), factory, policy=Policy(max_loaded=1))
    await mgr.get("m0")
    with pytest.raises(InvalidModelFile, match="truncated or corrupt"):
        await mgr.get("m1")
    assert opened == ["m0"] and mgr.loaded() == []
    assert "truncated or corrupt" in (mgr.registry.get("m1").error or "")
    await mgr.get("m0")  # the manager is fine and loads again
    assert opened == ["m0", "m0"]
    await mgr.close()


async def test_busy_model_and_timeout_is_503_with_retry_after(tmp_path: Path) -> None:
    mgr = manager(tmp_path, max_loaded=1, wait_timeout=0.2)
    async with mgr.use("m0"):
        with pytest.raises(NoCapacity) as err:
            await mgr.get("m1")
        assert err.value.status_code == 503 and err.value.retry_after > 0
        assert "m0" in err.value.message
        assert mgr.is_loaded("m0") and mgr.active("m1") == 0
    await mgr.close()


async def test_memory_budget_evicts_to_fit(tmp_path: Path) -> None:
    mgr = manager(tmp_path, max_loaded=10)
    size = mgr.estimate(mgr.registry.get("m0"))
    mgr.policy = Policy(max_loaded=10, memory_budget=2 * size)
    await mgr.get("m0")
    await mgr.get("m1")
    await mgr.get("m2")
    assert sorted(m.entry.id for m in mgr.loaded()) == ["m1", "m2"]
    assert mgr.memory_in_use() == 2 * size
    await mgr.close()


async def test_a_model_over_the_budget_still_loads_alone(tmp_path: Path) -> None:
    mgr = manager(tmp_path, memory_budget=1)
    await mgr.get("m0")
    await mgr.get("m1")
    assert [m.entry.id for m in mgr.loaded()] == ["m1"]
    await mgr.close()


async def test_unload_busy_waits_for_the_requests_unless_forced(tmp_path: Path) -> None:
    mgr = manager(tmp_path)
    lease = await mgr.acquire("m0")
    assert await mgr.unload("m0") == ("m0", "unloading")
    assert mgr.is_loaded("m0")
    lease.release()
    await until(lambda: not mgr.is_loaded("m0"))
    assert await mgr.unload("m0") == ("m0", "not_loaded")
    lease = await mgr.acquire("m1")
    assert await mgr.unload("m1", force=True) == ("m1", "unloaded")
    assert not mgr.is_loaded("m1")
    lease.release()  # late release of a model already gone is harmless
    await mgr.close()


async def test_a_stream_holds_its_lease_until_closed_or_dropped(tmp_path: Path) -> None:
    mgr = manager(tmp_path)

    async def numbers():  # type: ignore[no-untyped-def]
        for i in range(3):
            yield i

    lease = await mgr.acquire("m0", keep_alive=0)
    stream = lease.hold(numbers())
    assert [i async for i in stream] == [0, 1, 2]
    await until(lambda: not mgr.is_loaded("m0"))

    lease = await mgr.acquire("m0", keep_alive=0)
    lease.hold(numbers())  # never iterated: dropped at once
    await until(lambda: not mgr.is_loaded("m0"))
    assert mgr.active("m0") == 0

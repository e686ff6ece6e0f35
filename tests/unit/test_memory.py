from __future__ import annotations

from pathlib import Path

import pytest

from hearth.models.gguf_header import read_header
from hearth.models.memory import (
    estimate_bytes,
    kv_cache_bytes,
    memory_budget,
    parse_size,
    plan_context,
)


@pytest.mark.parametrize(
    ("text", "n"),
    [("1024", 1024), ("8GiB", 8 << 30), ("8G", 8 << 30), ("512MB", 512 << 20), ("1.5k", 1536)],
)
def test_sizes(text: str, n: int) -> None:
    assert parse_size(text) == n


def test_budget() -> None:
    assert memory_budget("off") is None
    assert memory_budget("2GiB") == 2 << 30
    auto = memory_budget("auto")
    assert auto is None or auto > 0
    with pytest.raises(ValueError):
        memory_budget("plenty")


def test_kv_cache_from_the_starter_models_shape(starter_model: Path) -> None:
    header = read_header(starter_model)
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims: K and V in f16 are 2 x 30 x 3 x 64 x 2 B.
    assert kv_cache_bytes(header, 1) == 2 * 30 * 3 * 64 * 2
    assert kv_cache_bytes(header, 1, "q8_0", "q8_0") < kv_cache_bytes(header, 1)
    small = estimate_bytes(header, 100, ctx_size=512, parallel=1)
    big = estimate_bytes(header, 100, ctx_size=4096, parallel=4)
    assert big - small == kv_cache_bytes(header, 4096 * 4 - 512) + 49152 * 4 * 3


def test_the_default_context_is_the_trained_one_when_it_fits(starter_model: Path) -> None:
    header = read_header(starter_model)
    size = starter_model.stat().st_size
    plan = plan_context(header, size, requested=None, parallel=4, budget=8 << 30)
    assert (plan.ctx_size, plan.parallel, plan.lowered) == (8192, 4, False)
    assert plan.kv_bytes == kv_cache_bytes(header, 8192 * 4)
    assert plan.describe() == "context 8192 per sequence, 4 sequences, KV 755 MB"
    assert plan_context(header, size, requested=None, parallel=4, budget=None).ctx_size == 8192


def test_a_tight_budget_lowers_the_context_only_as_far_as_it_must(starter_model: Path) -> None:
    header = read_header(starter_model)
    size = starter_model.stat().st_size
    budget = estimate_bytes(header, size, ctx_size=5000, parallel=4)
    plan = plan_context(header, size, requested=None, parallel=4, budget=budget)
    # The largest multiple of 256 whose estimate fits: 4864 (5120 would not).
    assert plan.ctx_size == 4864 and plan.lowered
    assert estimate_bytes(header, size, ctx_size=plan.ctx_size, parallel=4) <= budget
    assert estimate_bytes(header, size, ctx_size=plan.ctx_size + 256, parallel=4) > budget
    assert "trained for 8192; lowered to fit --max-memory" in plan.describe()
    # Never below 2048 by itself: past that the manager's budget check refuses the load.
    tiny = plan_context(header, size, requested=None, parallel=4, budget=size)
    assert tiny.ctx_size == 2048


def test_an_asked_context_is_taken_as_it_is(starter_model: Path) -> None:
    header = read_header(starter_model)
    size = starter_model.stat().st_size
    plan = plan_context(header, size, requested=16384, parallel=2, budget=size)
    assert (plan.ctx_size, plan.lowered) == (16384, False)
    # No header (an upstream, a file that did not parse): the fallback, no KV figure.
    assert plan_context(None, 0, requested=None, parallel=1, budget=None).ctx_size == 4096

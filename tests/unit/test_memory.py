from __future__ import annotations

from pathlib import Path

import pytest

from hearth.models.gguf_header import read_header
from hearth.models.memory import estimate_bytes, kv_cache_bytes, memory_budget, parse_size


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

"""How much memory a model will take once loaded, estimated from its GGUF header.

Weights are the file size (mmap'd, but they are touched on every token, so they count); the KV
cache is layers x KV heads x head size x cache type x (ctx_size x parallel) tokens, the shape
the worker allocates; a compute buffer and the logits come on top."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hearth.engine.base import DEFAULT_CTX_SIZE
from hearth.models.gguf_header import GGUFHeader

# Bytes per element of each KV cache type (q8_0 and q4_0 store 32 values in 34 and 18 bytes).
CACHE_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
COMPUTE_OVERHEAD = 64 * 2**20  # llama.cpp's compute buffers for small batches, roughly
AUTO_FRACTION = 0.8  # of physical memory, when the budget is "auto"
MIN_AUTO_CTX = 2048  # the budget never lowers the automatic context below this
CTX_STEP = 256  # a lowered context is a multiple of this

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """'8GiB', '8G', '512MB', '1073741824' -> bytes (K/M/G/T are binary units either way)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r}: use e.g. '8GiB', '512MiB' or a number of bytes")
    return int(float(match.group(1)) * 1024 ** _POWERS[match.group(2).lower()])


def physical_memory() -> int | None:
    """Total RAM of this machine, when the OS says."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(setting: str) -> int | None:
    """The budget in bytes for loaded models; None means no limit."""
    value = setting.strip().lower()
    if value in ("off", "none", "0", ""):
        return None
    if value == "auto":
        total = physical_memory()
        return int(total * AUTO_FRACTION) if total else None
    return parse_size(value)


def _int_meta(header: GGUFHeader, key: str) -> int | None:
    value = header.metadata.get(f"{header.architecture}.{key}")
    if isinstance(value, list):  # per-layer values (some architectures): take the largest
        value = max((v for v in value if isinstance(v, int)), default=None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def kv_cache_bytes(
    header: GGUFHeader, tokens: int, cache_type_k: str = "f16", cache_type_v: str = "f16"
) -> int:
    """Bytes of K and V cache for `tokens` cells, from the architecture's shape."""
    layers = _int_meta(header, "block_count")
    embd = _int_meta(header, "embedding_length")
    heads = _int_meta(header, "attention.head_count")
    if not layers or not embd or not heads:
        return 0
    kv_heads = _int_meta(header, "attention.head_count_kv") or heads
    k_dim = _int_meta(header, "attention.key_length") or embd // heads
    v_dim = _int_meta(header, "attention.value_length") or embd // heads
    per_token = kv_heads * (
        k_dim * CACHE_TYPE_BYTES.get(cache_type_k, 2.0)
        + v_dim * CACHE_TYPE_BYTES.get(cache_type_v, 2.0)
    )
    return int(layers * per_token * tokens)


def estimate_bytes(
    header: GGUFHeader | None,
    file_size: int,
    *,
    ctx_size: int,
    parallel: int,
    cache_type_k: str = "f16",
    cache_type_v: str = "f16",
) -> int:
    """Weights + KV cache + compute buffers + logits for one loaded model."""
    if header is None:
        return file_size + COMPUTE_OVERHEAD
    n_vocab = header.array_lengths.get("tokenizer.ggml.tokens", 0)
    kv = kv_cache_bytes(header, ctx_size * parallel, cache_type_k, cache_type_v)
    return file_size + kv + COMPUTE_OVERHEAD + n_vocab * 4 * parallel


@dataclass(frozen=True, slots=True)
class ContextPlan:
    """The context a model gets when it loads: tokens per sequence, how many sequences, and
    the KV cache they take together."""

    ctx_size: int
    parallel: int
    kv_bytes: int
    trained: int | None
    lowered: bool = False  # below the trained context, to fit the memory budget

    def describe(self) -> str:
        """The line logged at load: 'context 8192 per sequence, 4 sequences, KV 755 MB'."""
        text = (
            f"context {self.ctx_size} per sequence, {self.parallel} sequences, "
            f"KV {self.kv_bytes / 1e6:.0f} MB"
        )
        if self.lowered:
            text += f" (trained for {self.trained}; lowered to fit --max-memory)"
        return text


def plan_context(
    header: GGUFHeader | None,
    file_size: int,
    *,
    requested: int | None,
    parallel: int,
    budget: int | None,
    cache_type_k: str = "f16",
    cache_type_v: str = "f16",
) -> ContextPlan:
    """A context asked for (--ctx-size, a model's ctx_size) is taken as it is. Otherwise the
    model's trained context, as llama.cpp's server does, lowered only as far as the KV cache
    of all `parallel` sequences must shrink for the whole model to fit the budget (and never
    below MIN_AUTO_CTX: past that the manager's own budget check says no)."""
    trained = header.context_length if header is not None else None
    if requested:
        ctx = requested
    else:
        ctx = trained or DEFAULT_CTX_SIZE
        if budget is not None and header is not None:
            fixed = estimate_bytes(header, file_size, ctx_size=0, parallel=parallel)
            per_token = kv_cache_bytes(header, 2**20, cache_type_k, cache_type_v) / 2**20
            if per_token > 0:
                fits = int((budget - fixed) / (per_token * parallel)) // CTX_STEP * CTX_STEP
                ctx = max(min(ctx, fits), min(ctx, MIN_AUTO_CTX))
    kv = kv_cache_bytes(header, ctx * parallel, cache_type_k, cache_type_v) if header else 0
    lowered = not requested and trained is not None and ctx < trained
    return ContextPlan(ctx, parallel, kv, trained, lowered)

"""Property tests of the GGUF validator on crafted files, the class of CVE-2024-12055 (reads out
of bounds through a lying tensor table). Whatever the bytes, read_header and validate_model
return a header or raise GGUFError with a reason, in well under a second and without allocating
for what a count merely claims; and a header they return only points llama.cpp at data that is
inside the file.

Two sources of files: the real starter model's header with bytes flipped, fields overwritten
and the file cut or extended anywhere; and files built from scratch (tests/ggufs.raw_gguf) whose
every count, length, shape and offset may lie, judged against what the format allows."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from hypothesis import event, given
from hypothesis import strategies as st

from hearth.models.gguf_header import GGUFError, GGUFHeader, read_header
from hearth.models.validate import found_at, validate_model
from tests.ggufs import (
    ARRAY,
    STRING,
    U8,
    U32,
    RawTensor,
    gguf_array,
    gguf_kv,
    gguf_str,
    raw_gguf,
    tensor_nbytes,
)

pytestmark = pytest.mark.fuzz

T = TypeVar("T")

# Per call. The real header takes tens of milliseconds; a file claiming the most of every
# limit at once (gguf_header's MAX_*) a few tenths of a second on a slow machine.
TIME_LIMIT_S = 1.0
# Peak Python allocation reading a crafted file: a few kilobytes; a list or buffer sized from
# a lying count (2**28 elements, 2**26-byte strings) would take hundreds of megabytes.
MEMORY_LIMIT = 1 << 20
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: llama.cpp refuses tensor names of 64 bytes or more

_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # scalar types
_INTEGERS = {0, 1, 2, 3, 4, 5, 10, 11}  # of them, the integer types
KNOWN_TYPES = sorted(int(t) for t in GGML_QUANT_SIZES)
UNKNOWN_TYPES = [4, 5, 31, 36, 255, 1 << 31, (1 << 32) - 1]  # 4, 5, 31, 36: removed from ggml
# Values a crafted u32/u64 field takes: the edges of every limit and sum, and -1.. as unsigned.
EDGES = [0, 1, 2, 3, 4, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 1 << 16, 1 << 20]
EDGES += [(1 << 20) + 1, 1 << 26, (1 << 26) + 1, 1 << 28, (1 << 28) + 1, 1 << 31, (1 << 32) - 1]
EDGES += [1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 8, (1 << 64) - 1]


@dataclass
class Outcome:
    header: GGUFHeader | None  # what read_header returned
    error: GGUFError | None  # or what it raised


def _call(fn: Callable[[Path], object], path: Path) -> object:
    """fn(path), or the GGUFError it raised; any other exception propagates and fails."""
    try:
        return fn(path)
    except GGUFError as exc:
        assert exc.message, "a rejection without a reason"
        return exc


def _timed(fn: Callable[[Path], object], path: Path, label: str) -> object:
    start = time.perf_counter()
    result = _call(fn, path)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{label} took {elapsed:.2f} s"
    return result


def _peak_allocation(fn: Callable[[Path], object], path: Path) -> int:
    """Traced apart from the timed call: tracing makes a tight loop several times slower."""
    tracemalloc.start()
    try:
        _call(fn, path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def validate(path: Path, *, trace_memory: bool) -> Outcome:
    """read_header and validate_model on the file: checked for time, memory (trace_memory),
    a reason for every rejection and, for an accepted header, every tensor in bounds."""
    read = _timed(read_header, path, "read_header")
    checked = _timed(lambda p: validate_model(found_at(p, None)), path, "validate_model")
    if trace_memory:
        peak = _peak_allocation(read_header, path)
        assert peak < MEMORY_LIMIT, f"read_header allocated {peak} bytes"
    if isinstance(read, GGUFError):
        # validate_model reads the same header: the same rejection, word for word.
        assert isinstance(checked, GGUFError) and checked.message == read.message
        event(f"rejected: {_reason(read.message)[:60]}")
        return Outcome(None, read)
    assert isinstance(read, GGUFHeader)
    assert_in_bounds(read, path.stat().st_size)
    # What listings show of an accepted header must not raise either.
    read.architecture, read.context_length, read.quantization, read.n_params, read.split  # noqa: B018
    # validate_model may still refuse it, for a split model's missing parts.
    event("accepted" if not isinstance(checked, GGUFError) else "rejected as a split part")
    return Outcome(read, None)


def _reason(message: str) -> str:
    """The message without its numbers and names, to count the kinds of rejection."""
    return " ".join(w for w in message.split() if not any(c.isdigit() or c == "'" for c in w))


def assert_in_bounds(header: GGUFHeader, file_size: int) -> None:
    """Independent of the validator's own arithmetic: every tensor it accepted has a shape
    llama.cpp takes and data that lies inside the file, aligned, overlapping no other."""
    align = header.metadata.get("general.alignment", 32)
    assert isinstance(align, int) and align > 0 and header.data_offset % align == 0
    names = [t.name for t in header.tensors]
    assert len(set(names)) == len(names)
    spans = []
    for t in header.tensors:
        assert len(t.name.encode()) < MAX_NAME, t.name
        assert 1 <= len(t.shape) <= MAX_DIMS and min(t.shape) >= 1, t.shape
        assert t.n_bytes == tensor_nbytes(t.shape, t.ggml_type), t.name
        assert t.offset % align == 0, t.name
        start = header.data_offset + t.offset
        assert start + t.n_bytes <= file_size, f"{t.name} ends past the end of the file"
        spans.append((start, start + t.n_bytes, t.name))
    spans.sort()
    for (_, end, a), (start, _, b) in pairwise(spans):
        assert end <= start, f"{a} and {b} overlap"


# --- 1. The real starter model's header, mutated -------------------------------------------


@dataclass(frozen=True)
class RealHeader:
    raw: bytes  # the file up to its data section: header, metadata, the whole tensor table
    fields: tuple[tuple[int, int], ...]  # (offset, width) of each count, length and type
    file_size: int
    data_end: int  # where the last tensor's data ends
    n_tensors: int


@cache
def real_header(path: Path) -> RealHeader:
    header = read_header(path)
    with path.open("rb") as fh:
        raw = fh.read(header.data_offset)
    data_end = header.data_offset + max(t.offset + t.n_bytes for t in header.tensors)
    fields = tuple(field_map(raw))
    return RealHeader(raw, fields, path.stat().st_size, data_end, len(header.tensors))


def field_map(raw: bytes) -> list[tuple[int, int]]:
    """Walk a well-formed header (not with the validator: on its own) and list the fields a
    crafted file would lie in. Of a long array of strings, only the first and last few."""
    fields = [(4, 4), (8, 8), (16, 8)]  # version, tensor count, metadata count
    n_tensors, n_kv = struct.unpack_from("<QQ", raw, 8)
    pos = 24

    def u(width: int) -> int:
        nonlocal pos
        fields.append((pos, width))
        pos += width
        return int.from_bytes(raw[pos - width : pos], "little")

    def string(record: bool = True) -> None:
        nonlocal pos
        if record:
            n = u(8)  # not `pos += u(8)`: that adds to pos as it was before u moved it
            pos += n
        else:
            pos += 8 + int.from_bytes(raw[pos : pos + 8], "little")

    for _ in range(n_kv):
        string()
        vtype = u(4)
        if vtype == STRING:
            string()
        elif vtype == ARRAY:
            etype, count = u(4), u(8)
            if etype == STRING:
                for i in range(count):
                    string(record=i < 8 or i >= count - 2)
            else:
                pos += count * _SIZES[etype]
        else:
            pos += _SIZES[vtype]
    for _ in range(n_tensors):
        string()
        n_dims = u(4)
        for _ in range(n_dims):
            u(8)
        u(4)  # ggml type
        u(8)  # offset
    return fields


@dataclass(frozen=True)
class Mutation:
    """What to do to the real header: small, so that hypothesis can print a failing case."""

    edits: tuple[tuple[int, bytes], ...]  # (offset, the bytes written there), in order
    length: int  # of the file: it may cut the header or the data anywhere, or run past the end

    def apply(self, raw: bytes) -> bytes:
        data = bytearray(raw)
        for at, new in self.edits:
            data[at : at + len(new)] = new
        return bytes(data)


@st.composite
def mutation(draw: st.DrawFn, real: RealHeader) -> Mutation:
    data = bytearray(real.raw)
    edits = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):  # a count, length or type overwritten
            at, width = draw(st.sampled_from(real.fields))
            value = draw(st.sampled_from(EDGES) | st.integers(0, (1 << 64) - 1))
            new = (value % (1 << 8 * width)).to_bytes(width, "little")
        else:  # a bit flipped, in or near such a field or anywhere
            near = draw(st.sampled_from(real.fields))[0]
            at = min(
                draw(st.integers(near, near + 11) | st.integers(0, len(data) - 1)), len(data) - 1
            )
            new = bytes([data[at] ^ 1 << draw(st.integers(0, 7))])
        data[at : at + len(new)] = new
        edits.append((at, new))
    length = draw(
        st.integers(0, len(data))  # inside the header
        | st.integers(len(data), real.data_end)  # inside the tensor data
        | st.sampled_from([real.data_end - 1, real.data_end, real.file_size + 4096])
    )
    return Mutation(tuple(edits), length)


@given(data=st.data())
def test_mutated_real_header(data: st.DataObject, starter_model: Path, tmp_path: Path) -> None:
    real = real_header(starter_model)
    change = data.draw(mutation(real))
    raw = change.apply(real.raw)
    path = tmp_path / "m.gguf"
    path.write_bytes(raw[: change.length])
    os.truncate(path, change.length)  # past the header: zeros, not 100 MB written each time
    outcome = validate(path, trace_memory=False)  # the crafted files' test traces memory
    if raw == real.raw:
        # The CVE's case exactly: a real header whose tensor data is not all there.
        whole = change.length >= real.data_end
        assert (outcome.header is not None) == whole, outcome.error
        if outcome.header is not None:
            assert len(outcome.header.tensors) == real.n_tensors


# --- 2. Files built from scratch -----------------------------------------------------------

# Keys that read_header reads for a meaning (`context_length`, the tokenizer...), or of no
# meaning; the pair's index keeps them apart, so that a duplicate is a choice.
KEYS = ["llama.context_length", "general.name", "tokenizer.ggml.tokens", "general.file_type"]
# Keys whose pair the validator also judges by what it holds, and one every file already has.
RISKY_KEYS = st.sampled_from(["split.no", "split.count", "general.architecture"])
NAMES = ["token_embd.weight", "blk.0.attn_q.weight", "output.weight", "a", "", "x" * (MAX_NAME - 1)]
BAD_NAMES = ["x" * MAX_NAME, "é" * (MAX_NAME // 2), "x" * 1000]  # too long for llama.cpp


@dataclass(frozen=True)
class Pair:
    raw: bytes
    key: str
    honest: bool  # its lengths and counts are true: the next pair starts where it ends
    problem: str | None = None  # why an honest pair is still refused


def mostly(draw: st.DrawFn, good: st.SearchStrategy[T], bad: st.SearchStrategy[T]) -> T:
    """A draw from `good`, or about one time in ten from `bad`: each defect rare enough that
    many files have none, or just one, and get to the checks that come after it. (Not 0 for
    bad: hypothesis leans to the low end of a range.)"""
    return draw(bad if draw(st.integers(0, 9)) == 9 else good)


@st.composite
def metadata_pair(draw: st.DrawFn, i: int) -> Pair:
    keys = st.just(KEYS[i % len(KEYS)]) | st.text("abc._", max_size=8).map(lambda k: f"{k}#{i}")
    key = mostly(draw, keys, RISKY_KEYS)
    kind = mostly(
        draw,
        st.sampled_from(["string", "scalar", "array", "strings"]),
        st.sampled_from(["nested", "unknown", "lie"]),
    )
    if kind == "string":
        return Pair(gguf_kv(key, STRING, gguf_str(draw(st.text(max_size=12)))), key, True)
    if kind == "scalar":
        vtype = draw(st.sampled_from(sorted(_SIZES)))
        value = draw(st.binary(min_size=_SIZES[vtype], max_size=_SIZES[vtype]))
        return Pair(gguf_kv(key, vtype, value), key, True)
    if kind == "array":  # around KEEP_ARRAY (64): arrays kept in metadata, and those counted
        etype, count = draw(st.sampled_from(sorted(_SIZES))), draw(st.integers(0, 80))
        elements = draw(st.binary(min_size=count * _SIZES[etype], max_size=count * _SIZES[etype]))
        return Pair(gguf_kv(key, ARRAY, gguf_array(etype, count, elements)), key, True)
    if kind == "strings":
        texts = draw(st.lists(st.text(max_size=6), max_size=80))
        elements = b"".join(gguf_str(t) for t in texts)
        return Pair(gguf_kv(key, ARRAY, gguf_array(STRING, len(texts), elements)), key, True)
    if kind == "nested":  # GGUF allows arrays of arrays; llama.cpp does not read them
        inner = gguf_array(U8, 2, b"\1\2")
        raw = gguf_kv(key, ARRAY, gguf_array(ARRAY, 1, inner))
        return Pair(raw, key, True, "nested array")
    if kind == "unknown":
        vtype = draw(st.sampled_from([13, 14, 255, (1 << 32) - 1]))
        if draw(st.booleans()):
            return Pair(gguf_kv(key, ARRAY, gguf_array(vtype, 1, b"\0" * 8)), key, True, "type")
        return Pair(gguf_kv(key, vtype, b"\0" * 8), key, True, "unknown value type")
    # A length or count past the end of the pair, so past whatever follows too.
    text = draw(st.text(max_size=6))
    extra = draw(st.sampled_from(EDGES[1:]))
    lie = draw(st.sampled_from(["string", "key", "array", "strings"]))

    def more(n: int) -> int:
        return min(n + extra, (1 << 64) - 1)

    if lie == "string":
        raw = gguf_kv(key, STRING, gguf_str(text, claimed=more(len(text.encode()))))
    elif lie == "key":
        raw = gguf_str(key, claimed=more(len(key.encode()))) + struct.pack("<I", U8) + b"\0"
    else:
        etype = U32 if lie == "array" else STRING
        raw = gguf_kv(key, ARRAY, gguf_array(etype, more(1), gguf_str(text)))
    return Pair(raw, key, False)


@dataclass(frozen=True)
class Crafted:
    head: bytes  # the file up to its data section (or all of it, when cut before)
    size: int  # the file's length: past `head`, zeros
    data_offset: int  # where the data section starts when the header is whole
    honest: bool  # every count and length true, the header whole: the file means what it says
    tensors: tuple[RawTensor, ...]
    problems: tuple[str, ...]  # why the format or llama.cpp refuses an honest file; () if not
    past_end: tuple[str, ...]  # the tensors whose data runs past the end of the file


@st.composite
def crafted(draw: st.DrawFn) -> Crafted:
    problems: list[str] = []
    version = mostly(draw, st.sampled_from([3, 2]), st.sampled_from([0, 1, 4, (1 << 32) - 1]))
    if version not in (2, 3):
        problems.append("version")

    arch = "general.architecture"
    pairs = [Pair(gguf_kv(arch, STRING, gguf_str("llama")), arch, True)]
    align = 32
    if draw(st.booleans()):  # else the default, 32
        align = mostly(
            draw, st.sampled_from([1, 2, 8, 16, 32, 64, 4096]), st.sampled_from([0, 3, 48])
        )
        vtype = mostly(draw, st.just(U32), st.sampled_from([2, 5, 6, 10, 11]))
        value = align if vtype != 6 else float(align)
        fmt = {2: "<H", 4: "<I", 5: "<i", 6: "<f", 10: "<Q", 11: "<q"}[vtype]
        raw = gguf_kv("general.alignment", vtype, struct.pack(fmt, value))
        pairs.append(Pair(raw, "general.alignment", True))
        if vtype != U32:  # llama.cpp's gguf_get_val_u32 asserts the type: an abort
            problems.append("alignment type")
        if align <= 0 or align & (align - 1):
            problems.append("alignment")
    pad_to = align if align > 0 and not align & (align - 1) else 32
    pairs += [draw(metadata_pair(i)) for i in range(draw(st.integers(0, 4)))]
    if len({p.key for p in pairs}) < len(pairs):
        problems.append("duplicate key")
    for p in pairs:
        if p.problem:
            problems.append(p.problem)
        if p.key in ("split.no", "split.count") and not _is_integer(p.raw, p.key):
            problems.append("split key type")

    tensors: list[RawTensor] = []
    ends: list[tuple[int, int, str]] = []
    offset = 0
    for i in range(draw(st.integers(0, 5))):
        name = mostly(
            draw, st.sampled_from(NAMES) | st.just(f"blk.{i}.weight"), st.sampled_from(BAD_NAMES)
        )
        ggml_type = mostly(draw, st.sampled_from(KNOWN_TYPES), st.sampled_from(UNKNOWN_TYPES))
        known = ggml_type in KNOWN_TYPES
        block = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)][0] if known else 1
        n_dims = mostly(draw, st.integers(1, MAX_DIMS), st.sampled_from([0, 5, 6]))
        shape = [block * draw(st.integers(1, 8))] + [draw(st.integers(1, 8)) for _ in range(5)]
        shape = shape[:n_dims]
        odd_dim = mostly(draw, st.just(False), st.just(True))  # zero, not whole blocks, huge
        if shape and odd_dim:
            at = draw(st.integers(0, len(shape) - 1))
            shape[at] = draw(st.sampled_from([0, 1, 7, 33, 1 << 32, 1 << 40, 1 << 63]))
        n_bytes = tensor_nbytes(tuple(shape), ggml_type) if known else 0
        # Laid out one after the other as a writer does, or moved: misaligned, overlapping the
        # one before, leaving a gap, or far past any file.
        move = mostly(draw, st.just(0), st.sampled_from([1, -1, pad_to, -pad_to, 1 << 32, 1 << 63]))
        at_offset = min(max(offset + move, 0), (1 << 64) - 1)
        tensors.append(RawTensor(name, tuple(shape), ggml_type, at_offset))
        if not 1 <= n_dims <= MAX_DIMS:
            problems.append("dims")
        if not known:
            problems.append("unknown ggml type")
        elif shape and (0 in shape or shape[0] % block):
            problems.append("shape")
        if len(name.encode()) >= MAX_NAME:
            problems.append("long name")
        if at_offset % pad_to:
            problems.append("misaligned")
        ends.append((at_offset, at_offset + n_bytes, name))
        if n_bytes < 1 << 22:
            offset += n_bytes + -n_bytes % pad_to
    if len({t.name for t in tensors}) < len(tensors):
        problems.append("duplicate name")
    ends.sort()
    if any(a_end > b_start for (_, a_end, _), (b_start, _, _) in pairwise(ends)):
        problems.append("overlap")

    needed = max((end for _, end, _ in ends), default=0)
    # The data all there (or more), or cut short: the CVE's case when a tensor is left out.
    short = st.sampled_from([needed - 1, needed - 2 * pad_to, needed // 2, 0])
    data_size = max(0, min(draw(st.sampled_from([needed, needed + 100]) | short), 1 << 21))
    n_tensors = mostly(draw, st.none(), st.sampled_from(EDGES))
    n_kv = mostly(draw, st.none(), st.sampled_from(EDGES))
    file = raw_gguf(
        [p.raw for p in pairs],
        tensors,
        data_size=data_size,
        pad_to=pad_to,
        version=version,
        n_tensors=n_tensors,
        n_kv=n_kv,
    )
    honest = (
        all(p.honest for p in pairs)
        and n_tensors in (None, len(tensors))
        and n_kv in (None, len(pairs))
    )
    size = mostly(draw, st.just(len(file.data)), st.integers(0, len(file.data)))  # or cut
    honest = honest and size >= file.data_offset
    past_end = tuple(name for start, end, name in ends if file.data_offset + end > size)
    if past_end:
        problems.append("past end")
    # Only the header's bytes are kept: the data is zeros, written as a sparse tail, and
    # hypothesis prints a failing example whole.
    head = file.data[: min(size, file.data_offset)]
    return Crafted(head, size, file.data_offset, honest, tuple(tensors), tuple(problems), past_end)


def _is_integer(raw: bytes, key: str) -> bool:
    """Whether a pair written by metadata_pair holds a scalar of an integer type."""
    vtype = struct.unpack_from("<I", raw, 8 + len(key.encode()))[0]
    return vtype in _INTEGERS


@given(case=crafted())
def test_crafted_file(case: Crafted, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(case.head)
    os.truncate(path, case.size)
    outcome = validate(path, trace_memory=True)
    if not case.honest:
        return  # judged by validate() alone: a reason, and nothing out of bounds
    event(f"honest, {'valid' if not case.problems else 'invalid'}")
    if case.past_end:
        # What keeps llama.cpp from reading out of bounds.
        assert outcome.error is not None, f"accepted with {case.past_end} past the end"
    assert (outcome.header is not None) == (not case.problems), (case.problems, outcome.error)
    if outcome.header is not None:
        got = [(t.name, t.shape, t.ggml_type, t.offset) for t in outcome.header.tensors]
        assert got == [(t.name, t.shape, t.ggml_type, t.offset) for t in case.tensors]
        assert outcome.header.data_offset == case.data_offset

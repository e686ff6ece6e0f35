"""Read and validate a GGUF file's header without loading its weights.

The `gguf` package supplies the format's tables (value types, quantization block sizes, file
type names). Its reader parses every array element into numpy objects, which takes seconds
on a tokenizer with 50k entries; this reader walks the same layout with bounded reads and checks
every length and offset against the file before anything is handed to llama.cpp."""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
)

from hearth.errors import InvalidModelFile

# Far above any model (a few thousand tensors, a few dozen metadata pairs), low enough that a
# file claiming the most of each is read in well under a second.
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 12
MAX_STRING = 1 << 26  # 64 MiB: chat templates are kilobytes, names are bytes
MAX_ARRAY = 1 << 28
# Strings in arrays, all arrays together: the largest vocabularies with their merges hold
# about half a million. Each is a step of a Python loop, so this bounds the time a file of
# zeros claiming arrays of empty strings takes (a few tenths of a second at the limit).
MAX_ARRAY_STRINGS = 1 << 21
MAX_DIMS = 4
MAX_NAME = 64  # GGML_MAX_NAME: llama.cpp refuses tensor names this long or longer
KEEP_ARRAY = 64  # arrays up to this length are kept in metadata; longer ones only counted
# The smallest a metadata pair (empty key, type, one byte) and a tensor info (empty name,
# one dimension, type, offset) can be: a count the rest of the file cannot hold is a lie.
_MIN_KV = 8 + 4 + 1
_MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8
_INTEGER_TYPES = frozenset(
    {
        GGUFValueType.UINT8,
        GGUFValueType.INT8,
        GGUFValueType.UINT16,
        GGUFValueType.INT16,
        GGUFValueType.UINT32,
        GGUFValueType.INT32,
        GGUFValueType.UINT64,
        GGUFValueType.INT64,
    }
)

_SCALARS: dict[int, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# A tensor info's fixed parts, each read in one go: a crafted file may hold MAX_TENSORS infos.
_SHAPES = [struct.Struct(f"<{n}Q") for n in range(MAX_DIMS + 1)]
_TYPE_AND_OFFSET = struct.Struct("<IQ")
_BLOCKS = {int(t): sizes for t, sizes in GGML_QUANT_SIZES.items()}  # (block, bytes a block)


class GGUFError(InvalidModelFile):
    """The file is not a GGUF llama.cpp can safely read."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # from the start of the data section
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(slots=True)
class GGUFHeader:
    path: Path
    version: int
    file_size: int
    data_offset: int
    tensor_info_offset: int = 0  # where the tensor infos start, right after the metadata
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def tokenizer(self) -> str | None:
        """The tokenizer family llama.cpp uses (gpt2, llama, ...), from tokenizer.ggml.model."""
        value = self.metadata.get("tokenizer.ggml.model")
        return value if isinstance(value, str) else None

    @property
    def quantization(self) -> str:
        """Like llama.cpp names it: Q4_K_M, Q8_0, F16... from general.file_type when present."""
        ftype = self.metadata.get("general.file_type")
        if isinstance(ftype, int):
            try:
                return LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        counts = Counter(t.ggml_type for t in self.tensors if len(t.shape) >= 2)
        if not counts:
            return "unknown"
        try:
            return GGMLQuantizationType(counts.most_common(1)[0][0]).name
        except ValueError:
            return "unknown"

    @property
    def split(self) -> tuple[int, int] | None:
        """(index, count) for one file of a split model, else None."""
        count = self.metadata.get("split.count")
        if isinstance(count, int) and count > 1:
            return int(self.metadata.get("split.no", 0)), count
        return None


class _Cursor:
    """Bounded reads over the mapped file: every read checks it stays inside."""

    __slots__ = ("array_strings", "buf", "pos", "size")

    def __init__(self, buf: mmap.mmap, size: int):
        self.buf = buf
        self.size = size
        self.pos = 0
        self.array_strings = 0  # strings read in arrays so far, against MAX_ARRAY_STRINGS

    @property
    def left(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(
                f"file is truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"file has {self.size}"
            )

    def unpack(self, st: struct.Struct, what: str) -> Any:
        return self.unpack_all(st, what)[0]

    def unpack_all(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        self.need(st.size, what)
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def u32(self, what: str) -> int:
        return int(self.unpack(_U32, what))

    def u64(self, what: str) -> int:
        return int(self.unpack(_U64, what))

    def string_length(self, what: str) -> int:
        """A string's length field, checked against the limit and the rest of the file."""
        n = self.u64(f"length of {what}")
        if n > MAX_STRING:
            raise GGUFError(f"{what} claims a length of {n} bytes (limit {MAX_STRING})")
        self.need(n, what)
        return n

    def raw_string(self, what: str) -> bytes:
        n = self.string_length(what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw

    def string(self, what: str) -> str:
        return self.raw_string(what).decode("utf-8", "replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Step over `count` strings (a vocabulary: up to a few hundred thousand) with the
        checks of string_length inlined, the loop kept tight. At the first string that fails
        them, string_length reads it again to raise with the reason."""
        buf, size, pos = self.buf, self.size, self.pos
        unpack = _U64.unpack_from
        for _ in range(count):
            end = pos + 8
            if end <= size:
                n = unpack(buf, pos)[0]
                end += n
                if n <= MAX_STRING and end <= size:
                    pos = end
                    continue
            self.pos = pos
            self.string_length(what)  # raises: the checks above failed
        self.pos = pos


def _value(cur: _Cursor, vtype: int, key: str, header: GGUFHeader, keep: int) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype], key)
    if vtype == GGUFValueType.STRING:
        return cur.string(key)
    if vtype != GGUFValueType.ARRAY:
        raise GGUFError(f"metadata key {key!r} has unknown value type {vtype}")
    etype = cur.u32(f"element type of {key}")
    count = cur.u64(f"length of {key}")
    if count > MAX_ARRAY:
        raise GGUFError(f"array {key!r} claims {count} elements (limit {MAX_ARRAY})")
    if etype == GGUFValueType.ARRAY:
        raise GGUFError(f"array {key!r} holds arrays, which llama.cpp does not read")
    header.array_lengths[key] = count
    if etype in _SCALARS:
        st = _SCALARS[etype]
        cur.need(count * st.size, key)
        if count <= keep:
            values = [st.unpack_from(cur.buf, cur.pos + i * st.size)[0] for i in range(count)]
            cur.pos += count * st.size
            return values
        cur.pos += count * st.size
        return None
    if etype == GGUFValueType.STRING:
        # Every string takes at least its 8-byte length: a count the rest of the file cannot
        # hold fails here, before a loop or a list of that size.
        if count * 8 > cur.left:
            raise GGUFError(
                f"array {key!r} claims {count} strings, more than the {cur.left} bytes left hold"
            )
        cur.array_strings += count
        if cur.array_strings > MAX_ARRAY_STRINGS:
            raise GGUFError(
                f"arrays hold more than {MAX_ARRAY_STRINGS} strings in all (at {key!r})"
            )
        if count <= keep:
            return [cur.string(f"{key}[{i}]") for i in range(count)]
        cur.skip_strings(count, key)
        return None
    raise GGUFError(f"array {key!r} has unsupported element type {etype}")


def read_header(path: Path, *, keep_arrays: int = KEEP_ARRAY) -> GGUFHeader:
    """Parse and validate the header; raises GGUFError naming the first problem found. Arrays
    longer than `keep_arrays` (a vocabulary, merges) are only counted, not kept."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise GGUFError(f"cannot read {path.name}: {exc.strerror}") from exc
    if size == 0:
        raise GGUFError("file is empty")
    if size < 24:
        raise GGUFError(f"file is truncated: {size} bytes is smaller than a GGUF header")
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _parse(path, buf, size, keep_arrays)


def _parse(path: Path, buf: mmap.mmap, size: int, keep: int) -> GGUFHeader:
    cur = _Cursor(buf, size)
    magic = cur.u32("magic")
    if magic != GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file (bad magic {buf[0:4]!r})")
    version = cur.u32("version")
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version} (2 and 3 are supported)")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors > MAX_TENSORS:
        raise GGUFError(f"absurd tensor count {n_tensors} (limit {MAX_TENSORS})")
    if n_kv > MAX_KV:
        raise GGUFError(f"absurd metadata count {n_kv} (limit {MAX_KV})")
    if n_kv * _MIN_KV + n_tensors * _MIN_TENSOR_INFO > cur.left:
        raise GGUFError(
            f"{n_kv} metadata pairs and {n_tensors} tensors cannot fit in a file of {size} bytes"
        )
    header = GGUFHeader(path=path, version=version, file_size=size, data_offset=0)
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        if key in header.metadata:
            raise GGUFError(f"metadata key {key!r} appears twice")
        vtype = cur.u32(f"type of {key}")
        # llama.cpp reads these with typed getters that abort on any other type.
        if key == "general.alignment" and vtype != GGUFValueType.UINT32:
            raise GGUFError(f"general.alignment has value type {vtype}, not uint32")
        if key in ("split.no", "split.count") and vtype not in _INTEGER_TYPES:
            raise GGUFError(f"{key} has value type {vtype}, not an integer")
        header.metadata[key] = _value(cur, vtype, key, header, keep)
    header.tensor_info_offset = cur.pos
    # llama.cpp reads a score and a type for every token without checking these arrays'
    # lengths: a short one would be read past its end.
    tokens = header.array_lengths.get("tokenizer.ggml.tokens")
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        count = header.array_lengths.get(key)
        if tokens is not None and count is not None and count != tokens:
            raise GGUFError(f"{key} has {count} entries for {tokens} tokens")

    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    names: set[str] = set()
    for i in range(n_tensors):
        raw_name = cur.raw_string(f"name of tensor #{i}")
        if len(raw_name) >= MAX_NAME:
            raise GGUFError(
                f"tensor #{i} has a name of {len(raw_name)} bytes (llama.cpp allows {MAX_NAME - 1})"
            )
        name = raw_name.decode("utf-8", "replace")
        if name in names:
            raise GGUFError(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32(f"dimensions of {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = cur.unpack_all(_SHAPES[n_dims], f"shape of {name}")
        ggml_type, offset = cur.unpack_all(_TYPE_AND_OFFSET, f"type and offset of {name}")
        infos.append((name, shape, ggml_type, offset))

    align = header.metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise GGUFError(f"general.alignment {align!r} is not a power of two")
    header.data_offset = (cur.pos + align - 1) // align * align
    data_size = max(size - header.data_offset, 0)
    for name, shape, ggml_type, offset in infos:
        header.tensors.append(_tensor(name, shape, ggml_type, offset, align, data_size))
    # Each tensor is inside the data section; no two may share bytes either (llama.cpp would
    # refuse, and a writer never makes them).
    spans = sorted(header.tensors, key=lambda t: t.offset)
    for a, b in pairwise(spans):
        if a.offset + a.n_bytes > b.offset:
            raise GGUFError(f"tensors {a.name!r} and {b.name!r} overlap")
    return header


def _tensor(
    name: str, shape: tuple[int, ...], ggml_type: int, offset: int, align: int, data_size: int
) -> TensorInfo:
    if ggml_type not in _BLOCKS:
        raise GGUFError(f"tensor {name!r} has unknown type {ggml_type}")
    block, type_size = _BLOCKS[ggml_type]
    n = 1
    for d in shape:
        if d == 0 or d > 1 << 40:
            raise GGUFError(f"tensor {name!r} has an impossible shape {shape}")
        n *= d
    if shape[0] % block:
        raise GGUFError(f"tensor {name!r}: row of {shape[0]} is not a multiple of {block}")
    n_bytes = n // block * type_size  # Python ints: a size past 64 bits is just large
    if offset % align:
        raise GGUFError(f"tensor {name!r} is not aligned to {align} bytes")
    if offset + n_bytes > data_size:
        raise GGUFError(
            f"tensor {name!r} ends at byte {offset + n_bytes} of the data section, which has "
            f"only {data_size} bytes (file truncated or corrupt)"
        )
    return TensorInfo(name, shape, ggml_type, offset, n_bytes)

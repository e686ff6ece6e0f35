"""Small GGUF files made in the test suite: valid ones with the `gguf` package's writer, and raw
ones whose headers lie, for the validator's fuzz tests."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np


def write_tiny_gguf(
    path: Path, *, context_length: int = 256, chat_template: str | None = None, rows: int = 4
) -> Path:
    """A valid GGUF with one small tensor (128 bytes a row): enough for the registry, not for
    llama.cpp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context_length)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("blk.0.weight", np.zeros((rows, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_split_gguf(path: Path, parts: int = 3) -> list[Path]:
    """A valid split model: `path`'s stem + -0000i-of-0000n.gguf, one tensor per part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama", split_max_tensors=1)
    writer.add_context_length(256)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for i in range(parts):
        writer.add_tensor(f"blk.{i}.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return [path.with_name(f"{path.stem}-{i + 1:05d}-of-{parts:05d}.gguf") for i in range(parts)]


def write_projector(path: Path) -> Path:
    """A multimodal projector as converters write them: architecture 'clip'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "clip")
    writer.add_tensor("v.blk.0.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def corrupt(path: Path, how: str) -> Path:
    """Break a tiny GGUF written by write_tiny_gguf in one of the ways the validator catches."""
    data = bytearray(path.read_bytes())
    name = b"blk.0.weight"
    info = data.index(name) + len(name)  # then n_dims u32, 2 dims u64, type u32, offset u64
    if how == "truncated":  # cut half-way through the tensor data
        data = data[: len(data) - 256]
    elif how == "bad_magic":
        data[0:4] = b"GGML"
    elif how == "absurd_tensor_count":
        data[8:16] = (1 << 40).to_bytes(8, "little")
    elif how == "absurd_kv_count":
        data[16:24] = (1 << 40).to_bytes(8, "little")
    elif how == "absurd_string":  # the first metadata key claims 1 TiB
        data[24:32] = (1 << 40).to_bytes(8, "little")
    elif how == "tensor_past_end":
        offset_at = info + 4 + 16 + 4
        data[offset_at : offset_at + 8] = (1 << 20).to_bytes(8, "little")
    elif how == "empty":
        data = bytearray()
    else:
        raise ValueError(how)
    path.write_bytes(bytes(data))
    return path


def split_gguf_file(source: Path, folder: Path, stem: str, parts: int = 2) -> list[Path]:
    """Split a real GGUF the way llama.cpp's gguf-split does: every part keeps the split.*
    keys, the first one all the metadata, the tensors spread in order."""
    from hearth.models.gguf_header import read_header

    header = read_header(source)
    align = int(header.metadata.get("general.alignment", 32))
    raw = source.read_bytes()
    kv = raw[24 : header.tensor_info_offset]
    n_kv = len(header.metadata)
    per = -(-len(header.tensors) // parts)
    groups = [header.tensors[i * per : (i + 1) * per] for i in range(parts)]

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text.encode())) + text.encode()

    def pad(n: int) -> int:
        return -n % align

    paths = []
    for no, tensors in enumerate(groups):
        split_kv = (
            string("split.no") + struct.pack("<IH", 2, no)  # 2: uint16
            + string("split.count") + struct.pack("<IH", 2, parts)
            + string("split.tensors.count") + struct.pack("<Ii", 5, len(header.tensors))  # int32
        )  # fmt: skip
        infos, offset = b"", 0
        for t in tensors:
            infos += string(t.name) + struct.pack("<I", len(t.shape))
            infos += b"".join(struct.pack("<Q", d) for d in t.shape)
            infos += struct.pack("<IQ", t.ggml_type, offset)
            offset += t.n_bytes + pad(t.n_bytes)
        body = (kv if no == 0 else b"") + split_kv
        head = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), (n_kv if no == 0 else 0) + 3)
        out = head + body + infos
        out += bytes(pad(len(out)))
        for t in tensors:
            start = header.data_offset + t.offset
            out += raw[start : start + t.n_bytes] + bytes(pad(t.n_bytes))
        path = folder / f"{stem}-{no + 1:05d}-of-{parts:05d}.gguf"
        path.write_bytes(out)
        paths.append(path)
    return paths


# Raw GGUF bytes for the fuzz tests. Unlike gguf.GGUFWriter these write whatever they are told,
# so a header can lie: about a string's length, an array's count, a tensor's size or offset.
U8, U32, U64, STRING, ARRAY = 0, 4, 10, 8, 9  # GGUF value type ids


def gguf_str(text: str, *, claimed: int | None = None) -> bytes:
    """A GGUF string; `claimed` replaces its true length in the length field."""
    raw = text.encode()
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw


def gguf_kv(key: str, vtype: int, payload: bytes) -> bytes:
    """One metadata pair: key, value type, then the value's bytes as given."""
    return gguf_str(key) + struct.pack("<I", vtype) + payload


def gguf_array(etype: int, count: int, elements: bytes) -> bytes:
    """An array value's payload (the pair's type is ARRAY); `count` may lie about `elements`."""
    return struct.pack("<IQ", etype, count) + elements


@dataclass(frozen=True)
class RawTensor:
    name: str
    shape: tuple[int, ...]  # as many dims as written, even past GGUF's limit of 4
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class RawGGUF:
    data: bytes
    data_offset: int  # where a reader that pads to `pad_to` finds the data section


def tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    """Bytes of a tensor's data, from the gguf package's block table (rows are whole blocks)."""
    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
    n = 1
    for d in shape:
        n *= d
    return n // block * type_size


def raw_gguf(
    kvs: list[bytes],
    tensors: list[RawTensor],
    *,
    data_size: int,
    pad_to: int = 32,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
) -> RawGGUF:
    """Header, metadata pairs, tensor infos, zero padding to `pad_to`, then `data_size` zero
    bytes of tensor data. The counts default to the true ones."""
    infos = [
        gguf_str(t.name)
        + struct.pack(f"<I{len(t.shape)}Q", len(t.shape), *t.shape)
        + struct.pack("<IQ", t.ggml_type, t.offset)
        for t in tensors
    ]
    head = struct.pack(
        "<IIQQ",
        0x46554747,
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
    )
    out = head + b"".join(kvs) + b"".join(infos)
    out += bytes(-len(out) % pad_to)
    return RawGGUF(out + bytes(data_size), len(out))

"""The validator on files made here: every way a header can lie is named, none crashes."""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hearth.errors import InvalidModelFile
from hearth.models import gguf_header
from hearth.models.gguf_header import GGUFError, read_header
from hearth.models.registry import Registry
from hearth.models.validate import found_at, validate_model
from hearth.runtime import LlamaCppFactory
from hearth.settings import load_settings
from tests.ggufs import (
    ARRAY,
    STRING,
    U8,
    U32,
    U64,
    RawTensor,
    corrupt,
    gguf_array,
    gguf_kv,
    gguf_str,
    raw_gguf,
    write_split_gguf,
    write_tiny_gguf,
)

CASES = {
    "truncated": "truncated or corrupt",
    "bad_magic": "bad magic",
    "absurd_tensor_count": "absurd tensor count",
    "absurd_kv_count": "absurd metadata count",
    "absurd_string": "claims a length",
    "tensor_past_end": "ends at byte",
    "empty": "file is empty",
}


@pytest.mark.parametrize(("how", "message"), CASES.items())
def test_bad_file_is_rejected_with_its_reason(tmp_path: Path, how: str, message: str) -> None:
    path = corrupt(write_tiny_gguf(tmp_path / "m.gguf"), how)
    with pytest.raises(GGUFError, match=message):
        read_header(path)


@pytest.mark.parametrize(("how", "message"), CASES.items())
def test_bad_file_is_listed_invalid_with_its_reason(tmp_path: Path, how: str, message: str) -> None:
    corrupt(write_tiny_gguf(tmp_path / "bad.gguf"), how)
    write_tiny_gguf(tmp_path / "good.gguf")
    entries = {e.id: e for e in Registry(tmp_path).list()}
    assert entries["good"].status == "available"
    assert entries["bad"].status == "invalid"
    assert message in (entries["bad"].error or "")


def test_a_valid_tiny_file_passes(tmp_path: Path) -> None:
    header = read_header(write_tiny_gguf(tmp_path / "m.gguf", context_length=512))
    assert header.context_length == 512
    assert [t.name for t in header.tensors] == ["blk.0.weight"]


def test_every_part_of_a_split_model_is_validated(tmp_path: Path) -> None:
    parts = write_split_gguf(tmp_path / "big.gguf", parts=3)
    (entry,) = Registry(tmp_path).list()
    assert entry.status == "available"
    parts[2].write_bytes(parts[2].read_bytes()[:-100])
    (entry,) = Registry(tmp_path).list()
    assert entry.status == "invalid"
    assert entry.error and entry.error.startswith("part 3 (big-00003-of-00003.gguf)")


def truncated(path: Path) -> str:
    os.truncate(path, path.stat().st_size - 256)
    return "truncated or corrupt"


def rewritten_later(path: Path) -> str:
    """Same size, same inode: only the modification time tells."""
    before = path.stat().st_mtime_ns
    corrupt(path, "bad_magic")
    os.utime(path, ns=(before + 10**9, before + 10**9))
    return "bad magic"


def replaced_with_old_mtime(path: Path) -> str:
    """A same-size broken file renamed over it, with the old times put back."""
    st = path.stat()
    broken = corrupt(Path(shutil.copyfile(path, path.with_suffix(".new"))), "tensor_past_end")
    os.utime(broken, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(broken, path)
    return "ends at byte"


@pytest.mark.parametrize("change", [truncated, rewritten_later, replaced_with_old_mtime])
def test_a_file_that_goes_bad_after_the_scan_is_caught_before_load(
    tmp_path: Path, change: Callable[[Path], str]
) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf")
    registry = Registry(tmp_path)
    entry = registry.usable("m")
    assert registry.checked(entry) is entry  # unchanged: no new scan, no header read
    message = change(path)
    with pytest.raises(InvalidModelFile) as err:
        registry.checked(entry)
    assert err.value.status_code == 422 and err.value.param == "model"
    assert err.value.message.startswith("model 'm' is not usable: ")
    assert message in err.value.message
    with pytest.raises(InvalidModelFile, match=message):
        registry.usable("m")
    listed = registry.get("m")  # the listing knows too, without another scan
    assert listed.status == "invalid" and message in (listed.error or "")


def test_a_file_replaced_by_another_valid_one_is_read_again(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", context_length=256)
    registry = Registry(tmp_path)
    entry = registry.usable("m")
    write_tiny_gguf(path.with_suffix(".new"), context_length=1024, rows=8)
    os.replace(path.with_suffix(".new"), path)
    fresh = registry.checked(entry)
    assert fresh.header is not None and fresh.header.context_length == 1024
    assert fresh.size_bytes == path.stat().st_size > entry.size_bytes
    assert registry.usable("m") is fresh


def test_a_broken_draft_model_never_reaches_llama_cpp(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "models" / "m.gguf")
    draft = corrupt(write_tiny_gguf(tmp_path / "draft.gguf"), "truncated")
    config = tmp_path / "config.toml"
    config.touch()
    settings = load_settings(
        {"config": config, "models_dir": model.parent, "draft_model": draft}, environ={}
    )
    (entry,) = Registry(model.parent).list()
    assert entry.status == "available"
    with pytest.raises(InvalidModelFile) as err:
        LlamaCppFactory(settings)(entry)
    assert err.value.param == "draft_model"
    assert err.value.message.startswith("draft model draft.gguf: ")
    assert "truncated or corrupt" in err.value.message


# Headers that lie, built byte by byte (tests/ggufs.raw_gguf): each is refused with its reason.
# tests/unit/test_gguf_fuzz.py searches the same space at random; these pin each rule down.
ARCH = gguf_kv("general.architecture", STRING, gguf_str("llama"))
Q = RawTensor("blk.0.attn_q.weight", (32, 4), 0, 0)  # F32: 512 bytes


def _u32(key: str, value: int) -> bytes:
    return gguf_kv(key, U32, struct.pack("<I", value))


LIES: dict[str, tuple[dict[str, Any], str]] = {
    "data_cut_short": ({"data_size": 511}, "'blk.0.attn_q.weight' ends at byte 512"),
    "offset_past_end": (
        {"tensors": [RawTensor("t", (32,), 0, 1 << 63)]},
        f"'t' ends at byte {(1 << 63) + 128}",
    ),
    "size_past_64_bits": (
        {"tensors": [RawTensor("t", (1 << 40, 1 << 40, 1 << 40), 0, 0)]},
        "'t' ends at byte",
    ),
    "overlap": (
        {"tensors": [Q, RawTensor("b", (32,), 0, 256)]},
        "tensors 'blk.0.attn_q.weight' and 'b' overlap",
    ),
    "misaligned": (
        {
            "kvs": [ARCH, _u32("general.alignment", 64)],
            "tensors": [Q, RawTensor("b", (32,), 0, 544)],
            "pad_to": 64,
            "data_size": 1024,
        },
        "'b' is not aligned to 64 bytes",
    ),
    "alignment_not_u32": (
        {"kvs": [ARCH, gguf_kv("general.alignment", U64, struct.pack("<Q", 32))]},
        "general.alignment has value type 10, not uint32",
    ),
    "zero_dimension": ({"tensors": [RawTensor("t", (32, 0), 0, 0)]}, "impossible shape (32, 0)"),
    "five_dimensions": (
        {"tensors": [RawTensor("t", (32, 1, 1, 1, 1), 0, 0)]},
        "'t' has 5 dimensions (1 to 4 allowed)",
    ),
    "unknown_ggml_type": ({"tensors": [RawTensor("t", (32,), 4, 0)]}, "'t' has unknown type 4"),
    "duplicate_tensor": ({"tensors": [Q, Q]}, "tensor 'blk.0.attn_q.weight' appears twice"),
    "long_tensor_name": (
        {"tensors": [RawTensor("x" * 64, (32,), 0, 0)]},
        "tensor #0 has a name of 64 bytes",
    ),
    "tensor_count_past_end": ({"n_tensors": 1 << 16}, "65536 tensors cannot fit"),
    "kv_count_past_end": ({"n_kv": 1 << 12}, "4096 metadata pairs and 1 tensors cannot fit"),
    "duplicate_key": ({"kvs": [ARCH, ARCH]}, "metadata key 'general.architecture' appears twice"),
    "string_past_end": (
        {"kvs": [gguf_kv("general.name", STRING, gguf_str("x", claimed=1000))]},
        "general.name needs 1000 bytes",
    ),
    "strings_past_end": (
        {"kvs": [gguf_kv("tokenizer.ggml.tokens", ARRAY, gguf_array(STRING, 1 << 20, b""))]},
        "array 'tokenizer.ggml.tokens' claims 1048576 strings, more than the",
    ),
    "scalars_past_end": (
        {"kvs": [gguf_kv("tokenizer.ggml.scores", ARRAY, gguf_array(U32, 1 << 20, b""))]},
        "tokenizer.ggml.scores needs 4194304 bytes",
    ),
    "short_scores": (
        {
            "kvs": [
                ARCH,
                gguf_kv("tokenizer.ggml.tokens", ARRAY, gguf_array(STRING, 2, gguf_str("a") * 2)),
                gguf_kv("tokenizer.ggml.scores", ARRAY, gguf_array(U32, 1, b"\0\0\0\0")),
            ]
        },
        "tokenizer.ggml.scores has 1 entries for 2 tokens",
    ),
    "nested_array": (
        {"kvs": [gguf_kv("a", ARRAY, gguf_array(ARRAY, 1, gguf_array(U8, 1, b"\1")))]},
        "array 'a' holds arrays",
    ),
    "split_no_not_integer": (
        {"kvs": [ARCH, _u32("split.count", 2), gguf_kv("split.no", STRING, gguf_str("one"))]},
        "split.no has value type 8, not an integer",
    ),
}


def _lying_file(path: Path, spec: dict[str, Any]) -> Path:
    args = {"kvs": [ARCH], "tensors": [Q], "data_size": 512, **spec}
    path.write_bytes(raw_gguf(args.pop("kvs"), args.pop("tensors"), **args).data)
    return path


def test_an_honest_raw_file_passes(tmp_path: Path) -> None:
    """The control for LIES: the same builder, telling the truth."""
    header = read_header(_lying_file(tmp_path / "m.gguf", {}))
    assert [(t.name, t.shape, t.n_bytes) for t in header.tensors] == [(Q.name, Q.shape, 512)]


@pytest.mark.parametrize(("spec", "message"), LIES.values(), ids=LIES.keys())
def test_a_lying_header_is_refused_with_its_reason(
    tmp_path: Path, spec: dict[str, Any], message: str
) -> None:
    path = _lying_file(tmp_path / "m.gguf", spec)
    with pytest.raises(GGUFError, match=re.escape(message)):
        read_header(path)
    # validate_model says the same: before, a split.no that is a string was a ValueError there.
    with pytest.raises(GGUFError, match=re.escape(message)):
        validate_model(found_at(path, None))


def test_strings_in_arrays_are_bounded_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each string is a step of a loop: a file of zeros claiming arrays of empty strings is
    stopped at the limit, however big the file (the limit is made small here)."""
    monkeypatch.setattr(gguf_header, "MAX_ARRAY_STRINGS", 100)
    empty = gguf_str("") * 60
    kvs = [gguf_kv(k, ARRAY, gguf_array(STRING, 60, empty)) for k in ("a", "b")]
    path = _lying_file(tmp_path / "m.gguf", {"kvs": kvs})
    with pytest.raises(GGUFError, match="arrays hold more than 100 strings in all"):
        read_header(path)
    monkeypatch.setattr(gguf_header, "MAX_ARRAY_STRINGS", 120)
    assert read_header(path).array_lengths == {"a": 60, "b": 60}

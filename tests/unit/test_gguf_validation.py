"""The validator on files made here: every way a header can lie is named, none crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.models.gguf_header import GGUFError, read_header
from hearth.models.registry import Registry
from tests.ggufs import corrupt, write_split_gguf, write_tiny_gguf

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

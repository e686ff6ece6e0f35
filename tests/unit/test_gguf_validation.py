"""The validator on files made here: every way a header can lie is named, none crashes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hearth.errors import InvalidModelFile
from hearth.models.gguf_header import GGUFError, read_header
from hearth.models.registry import Registry
from hearth.runtime import LlamaCppFactory
from hearth.settings import load_settings
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

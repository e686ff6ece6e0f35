"""The registry: recursive scan, split models, projectors, stable distinct ids, config entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.errors import InvalidModelFile, ModelNotFound
from hearth.models.config import ModelConfig
from hearth.models.registry import Registry
from tests.ggufs import write_projector, write_split_gguf, write_tiny_gguf


def ids(registry: Registry) -> list[str]:
    return [e.id for e in registry.list()]


def test_recursive_scan_with_folder_prefixes(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "Top.Q4_K_M.gguf")
    write_tiny_gguf(tmp_path / "family" / "Small.gguf")
    write_tiny_gguf(tmp_path / "family" / "deeper" / "tiny.gguf")
    write_tiny_gguf(tmp_path / ".hidden" / "secret.gguf")
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "half.gguf.partial").write_bytes(b"GGUF")
    assert ids(Registry(tmp_path)) == ["family/deeper/tiny", "family/small", "top.q4_k_m"]


def test_split_model_is_one_model_loaded_from_its_first_part(tmp_path: Path) -> None:
    parts = write_split_gguf(tmp_path / "Big-Model.gguf", parts=3)
    (entry,) = Registry(tmp_path).list()
    assert entry.id == "big-model"
    assert entry.path == parts[0]
    assert entry.parts == tuple(parts)
    assert entry.size_bytes == sum(p.stat().st_size for p in parts)
    assert entry.n_params == 3 * 128  # tensors of every part


def test_split_model_with_a_missing_part_is_invalid(tmp_path: Path) -> None:
    parts = write_split_gguf(tmp_path / "big.gguf", parts=3)
    parts[1].unlink()
    (entry,) = Registry(tmp_path).list()
    assert entry.status == "invalid"
    assert entry.error == "split model is missing part(s) 2 of 3"


def test_lone_split_part_renamed_is_invalid(tmp_path: Path) -> None:
    parts = write_split_gguf(tmp_path / "big.gguf", parts=2)
    parts[0].rename(tmp_path / "renamed.gguf")
    parts[1].unlink()
    (entry,) = Registry(tmp_path).list()
    assert entry.id == "renamed"
    assert "part 1 of a 2-part split model" in (entry.error or "")


def test_projectors_are_recognised_not_listed(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "vision" / "llava.gguf")
    write_projector(tmp_path / "vision" / "mmproj-llava-f16.gguf")
    write_projector(tmp_path / "vision" / "clip-encoder.gguf")  # no 'mmproj' in the name
    registry = Registry(tmp_path)
    (entry,) = registry.list()
    assert entry.id == "vision/llava"
    assert entry.projector is not None and entry.projector.name == "mmproj-llava-f16.gguf"
    assert [p.name for p in registry.projectors()] == ["mmproj-llava-f16.gguf"]


def test_clashing_ids_are_listed_distinctly_and_stably(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "Model.gguf")
    write_tiny_gguf(tmp_path / "model.gguf")
    write_tiny_gguf(tmp_path / "model-2.gguf")  # a real file keeps its own id
    first = Registry(tmp_path).list()
    assert [e.id for e in first] == ["model", "model-2", "model-3"]
    by_id = {e.id: e.path.name for e in first}
    assert by_id == {"model": "Model.gguf", "model-3": "model.gguf", "model-2": "model-2.gguf"}
    again = {e.id: e.path.name for e in Registry(tmp_path).list()}
    assert again == by_id


def test_lookup_is_case_insensitive_and_never_a_path(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "models" / "a.gguf")
    write_tiny_gguf(tmp_path / "outside.gguf")
    registry = Registry(tmp_path / "models")
    assert registry.get("A").id == "a"
    for name in ["../outside", "..%2Foutside", str(tmp_path / "outside.gguf"), "a\x00", "/a"]:
        with pytest.raises(ModelNotFound):
            registry.get(name)


def test_user_symlinks_are_followed_for_reading(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_tiny_gguf(store / "linked.gguf")
    write_tiny_gguf(store / "folder" / "inside.gguf")
    models = tmp_path / "models"
    models.mkdir()
    (models / "linked.gguf").symlink_to(store / "linked.gguf")
    (models / "folder").symlink_to(store / "folder", target_is_directory=True)
    (models / "loop").symlink_to(models, target_is_directory=True)  # must not hang
    assert ids(Registry(models)) == ["folder/inside", "linked"]


def test_config_entries(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_tiny_gguf(models / "local.gguf")
    elsewhere = write_tiny_gguf(tmp_path / "elsewhere" / "Far.gguf")
    configs = [
        ModelConfig(id="local", aliases=["small"], keep_alive="1h"),  # settings only
        ModelConfig(path=elsewhere, aliases=["far-away"]),
        ModelConfig(id="named", path=elsewhere, ctx_size=512),
        ModelConfig(id="ghost", path=tmp_path / "missing.gguf"),
        ModelConfig(id="nothing-here"),
    ]
    registry = Registry(models, configs=configs)
    entries = {e.id: e for e in registry.list()}
    assert set(entries) == {"local", "far", "named", "ghost", "nothing-here"}
    assert entries["local"].config is configs[0]
    assert entries["local"].config.keep_alive_seconds == 3600
    assert entries["named"].config is not None and entries["named"].config.ctx_size == 512
    assert entries["ghost"].status == "invalid" and "file not found" in (
        entries["ghost"].error or ""
    )
    assert entries["nothing-here"].status == "invalid"
    assert registry.get("SMALL").id == "local"
    assert registry.get("far-away").id == "far"
    with pytest.raises(InvalidModelFile, match="file not found"):
        registry.usable("ghost")


def test_configured_id_wins_a_clash_and_aliases_never_shadow_ids(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "models" / "chat.gguf")
    other = write_tiny_gguf(tmp_path / "other.gguf")
    configs = [ModelConfig(id="chat", path=other, aliases=["other", "chat-2"])]
    registry = Registry(tmp_path / "models", configs=configs)
    entries = {e.id: e for e in registry.list()}
    assert entries["chat"].path == other
    assert entries["chat-2"].path.name == "chat.gguf"
    assert registry.get("chat-2").path.name == "chat.gguf"  # the id, not the alias
    assert registry.get("other").id == "chat"


def test_headers_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", context_length=256)
    registry = Registry(tmp_path)
    assert registry.get("m").header is not None
    first = registry.get("m").header
    assert registry.list()[0].header is first
    write_tiny_gguf(path, context_length=1024)
    os.utime(path, ns=(1, 1))
    header = registry.list()[0].header
    assert header is not None and header.context_length == 1024

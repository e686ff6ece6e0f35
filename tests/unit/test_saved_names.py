"""The saved names store (copies, created models) as the registry merges it, name rules,
digests and fill-in-the-middle tokens."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.errors import ConfigError, InvalidRequestError
from hearth.models.capabilities import FimTokens, fim_tokens
from hearth.models.names import copy_model, create_from, plan_removal
from hearth.models.registry import Registry
from hearth.models.saved import display_name, normalise_name
from tests.ggufs import write_tiny_gguf


def test_names_are_normalised_with_one_tag() -> None:
    assert normalise_name("Mine:Latest") == "mine"
    assert normalise_name("team/mine:v2.1") == "team/mine:v2.1"
    assert display_name("mine") == "mine:latest" and display_name("mine:v2") == "mine:v2"
    for bad in ("mine:", "a:b:c", "../x", "x:../y", ""):
        with pytest.raises(InvalidRequestError):
            normalise_name(bad)


def test_copies_and_created_models_are_merged_on_every_scan(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "base.gguf")
    registry = Registry(tmp_path)
    copy_model(registry, "base", "other:v1")
    create_from(registry, "tuned", "base:latest", {"system_prompt": "Hi.", "ctx_size": 128})
    fresh = Registry(tmp_path)  # another process, or a restart
    assert [e.id for e in fresh.list()] == ["base", "tuned"]
    assert fresh.get("other:v1").id == "base"
    tuned = fresh.get("tuned:latest")
    assert tuned.config is not None and tuned.config.system_prompt == "Hi."
    assert tuned.path == (tmp_path / "base.gguf").resolve()
    assert fresh.digest(tuned) != fresh.digest(fresh.get("base"))  # its settings differ
    assert plan_removal(fresh, "other:v1").kind == "copy"
    assert plan_removal(fresh, "tuned").kind == "created"


def test_an_unreadable_names_file_is_ignored_but_never_overwritten(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "base.gguf")
    (tmp_path / ".hearth").mkdir()
    (tmp_path / ".hearth" / "names.json").write_text("{not json")
    registry = Registry(tmp_path)
    assert [e.id for e in registry.list()] == ["base"]
    with pytest.raises(ConfigError, match="fix or remove it"):
        copy_model(registry, "base", "other")
    assert (tmp_path / ".hearth" / "names.json").read_text() == "{not json"


def test_the_digest_follows_the_file(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf")
    registry = Registry(tmp_path)
    first = registry.digest(registry.get("m"))
    assert first == registry.digest(registry.get("m")) and len(first) == 64
    write_tiny_gguf(path, context_length=512)
    assert registry.digest(registry.usable("m")) != first


def test_fim_tokens_current_and_legacy_keys(tmp_path: Path) -> None:
    def model(keys: dict[str, int]) -> Path:
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        for key, value in keys.items():
            writer.add_uint32(f"tokenizer.ggml.{key}_token_id", value)
        writer.add_tensor("w", np.zeros((4, 32), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    model({"fim_pre": 5, "fim_suf": 6, "fim_mid": 7})
    model({"prefix": 1, "suffix": 2, "middle": 3})
    model({"fim_pre": 5, "fim_suf": 6})  # incomplete: no FIM
    entries = Registry(tmp_path).list()
    assert [fim_tokens(e) for e in entries] == [FimTokens(5, 6, 7), FimTokens(1, 2, 3), None]

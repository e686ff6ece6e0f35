from __future__ import annotations

from pathlib import Path

import pytest

from hearth.models.gguf_header import GGUFError, read_header


def test_reads_starter_model_metadata(starter_model: Path) -> None:
    h = read_header(starter_model)
    assert h.architecture == "llama"
    assert h.context_length == 8192
    assert h.quantization == "Q4_1"
    assert 130_000_000 < h.n_params < 140_000_000
    assert h.chat_template and "im_start" in h.chat_template
    assert h.array_lengths["tokenizer.ggml.tokens"] == 49152
    assert h.tokenizer == "gpt2"


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    with pytest.raises(GGUFError, match="empty"):
        read_header(p)


def test_bad_magic(tmp_path: Path) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"NOPE" + bytes(60))
    with pytest.raises(GGUFError, match="magic"):
        read_header(p)


def test_truncated_mid_tensor(tmp_path: Path, starter_model: Path) -> None:
    p = tmp_path / "cut.gguf"
    with starter_model.open("rb") as src:
        p.write_bytes(src.read(50_000_000))
    with pytest.raises(GGUFError, match="truncated or corrupt"):
        read_header(p)

"""Detokenization with the starter model's real byte-level tokenizer."""

from __future__ import annotations

from pathlib import Path

from hearth.engine.detok import Utf8Stream
from hearth.engine.llamacpp.native import NativeModel


def splits_a_character(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_streamed_pieces_never_split_characters(starter_model: Path) -> None:
    model = NativeModel(starter_model)
    try:
        text = "Café 🌍 世界 — naïve ✓"
        tokens = model.tokenize(text, add_special=False)
        pieces = [model.piece(t) for t in tokens]
        assert any(splits_a_character(p) for p in pieces)
        stream = Utf8Stream()
        out = [stream.feed(p) for p in pieces]
        assert all("\ufffd" not in o for o in out)
        assert "".join(out) + stream.flush() == text
    finally:
        model.close()

from __future__ import annotations

from hearth.engine.detok import Utf8Stream


def test_character_split_across_tokens_is_held_until_complete() -> None:
    data = "a🌍b世".encode()
    pieces = [data[0:1], data[1:3], data[3:5], data[5:6], data[6:8], data[8:]]
    stream = Utf8Stream()
    out = [stream.feed(p) for p in pieces]
    assert "\ufffd" not in "".join(out)
    assert "".join(out) + stream.flush() == "a🌍b世"
    assert out[1] == ""  # half an emoji emits nothing


def test_incomplete_tail_becomes_replacement_at_flush() -> None:
    stream = Utf8Stream()
    assert stream.feed("é".encode()[:1]) == ""
    assert stream.flush() == "\ufffd"


def test_invalid_bytes_do_not_raise() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"\xff ok") == "\ufffd ok"

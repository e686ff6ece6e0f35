from __future__ import annotations

import math

import pytest

from hearth.models.keepalive import format_keep_alive, parse_keep_alive


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5m", 300),
        ("30s", 30),
        ("1h", 3600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("0", 0),
        (0, 0),
        (90, 90),
        (2.5, 2.5),
        ("120", 120),
        ("-1", math.inf),
        (-1, math.inf),
        ("-1m", math.inf),
        (1e30, math.inf),  # past a century: forever, which timers and timestamps can hold
        ("99999999999h", math.inf),
    ],
)
def test_ollama_durations(value: str | float, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["", "5 minutes", "m", "5x", "1h-2m", "abc", True, "nan"])
def test_nonsense_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_keep_alive(value)


def test_format() -> None:
    assert [format_keep_alive(s) for s in (math.inf, 0, 90, 300, 5400)] == [
        "forever",
        "0s",
        "1m30s",
        "5m",
        "1h30m",
    ]

from __future__ import annotations

from hearth.engine.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> tuple[str, bool]:
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    out.append(matcher.flush())
    return "".join(out), False


def test_no_stops_passes_text_through() -> None:
    m = StopMatcher([])
    assert m.feed("hello") == ("hello", False)


def test_stop_inside_one_piece_cuts_before_it() -> None:
    assert feed_all(StopMatcher(["END"]), ["abc END def"]) == ("abc ", True)


def test_stop_spanning_pieces_is_never_emitted_even_in_part() -> None:
    m = StopMatcher(["</answer>"])
    emitted = []
    for piece in ["The value", " is 4</", "ans", "wer> more"]:
        text, stopped = m.feed(piece)
        emitted.append(text)
        assert "<" not in text  # the start of the stop string was held back
        if stopped:
            break
    assert "".join(emitted) == "The value is 4"
    assert stopped


def test_held_text_released_when_it_turns_out_not_to_be_a_stop() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("go ST") == ("go ", False)
    assert m.feed("ART") == ("START", False)


def test_held_text_flushed_at_end() -> None:
    assert feed_all(StopMatcher(["xyz"]), ["abc x"]) == ("abc x", False)


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(StopMatcher(["two", "one"]), ["zero one two"]) == ("zero ", True)


def test_stop_at_very_start() -> None:
    assert feed_all(StopMatcher(["\n"]), ["\nrest"]) == ("", True)


def test_overlapping_prefixes() -> None:
    # "aab" must be found even though "aa" first looks like a partial match that fails.
    assert feed_all(StopMatcher(["aab"]), ["a", "a", "a", "b", "c"]) == ("a", True)


def test_the_stop_string_found_is_named() -> None:
    m = StopMatcher(["END", "\n\n"])
    assert m.matched is None
    assert m.feed("some text\n") == ("some text", False)
    assert m.matched is None
    assert m.feed("\nEND") == ("", True)
    assert m.matched == "\n\n"  # the earliest in the text, not the first in the list

"""StopMatcher: text is emitted as early as possible and never includes any part of a stop string."""

from __future__ import annotations

import itertools

import pytest

from services.inference.stop import StopMatcher


def run(stops: list[str], chunks: list[str]) -> tuple[list[str], bool, str]:
    """Push every chunk until a stop; returns what each push emitted, whether it stopped, the flush."""
    matcher = StopMatcher(stops)
    emitted = []
    for chunk in chunks:
        text, stopped = matcher.push(chunk)
        emitted.append(text)
        if stopped:
            return emitted, True, matcher.flush()
    return emitted, False, matcher.flush()


def test_without_stops_text_passes_through_unheld() -> None:
    assert run([], ["Hello", " wor", "ld"]) == (["Hello", " wor", "ld"], False, "")


def test_empty_stop_strings_are_ignored_rather_than_matching_everywhere() -> None:
    assert run([""], ["abc"]) == (["abc"], False, "")
    assert run(["", "END"], ["abc", "END"]) == (["abc", ""], True, "")


def test_stop_inside_one_chunk_cuts_the_text_before_it() -> None:
    assert run(["END"], ["Hello END world"]) == (["Hello "], True, "")


def test_stop_at_the_very_start_emits_nothing() -> None:
    assert run(["</s>"], ["</s>rest"]) == ([""], True, "")


def test_chunk_ending_exactly_with_the_stop() -> None:
    assert run(["</s>"], ["x</s>"]) == (["x"], True, "")


def test_stop_split_across_two_chunks_is_held_then_dropped() -> None:
    assert run(["END"], ["Hello EN", "D more"]) == (["Hello ", ""], True, "")


def test_stop_split_across_three_chunks() -> None:
    assert run(["</s>"], ["ok<", "/s", ">"]) == (["ok", "", ""], True, "")


def test_a_prefix_that_does_not_complete_is_released_with_the_next_chunk() -> None:
    assert run(["END"], ["Hello EN", "X"]) == (["Hello ", "ENX"], False, "")


def test_only_the_tail_that_could_still_become_a_stop_is_held() -> None:
    matcher = StopMatcher(["</s>"])
    assert matcher.push("abc</s") == ("abc", False)
    assert matcher.flush() == "</s"


def test_held_text_is_flushed_when_the_generation_ends_without_a_stop() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.push("the E") == ("the ", False)
    assert matcher.flush() == "E"
    assert matcher.flush() == ""


def test_matching_is_case_sensitive() -> None:
    assert run(["END"], ["end", "End"]) == (["end", "End"], False, "")


def test_self_overlapping_stop_releases_only_what_cannot_start_it() -> None:
    # "aaa" ends with "aa", which still starts "aab": only the first "a" is safe.
    assert run(["aab"], ["aa", "a", "b"]) == (["", "a", ""], True, "")


def test_earliest_stop_wins_among_several() -> None:
    assert run(["world", "lo"], ["hello world"]) == (["hel"], True, "")


def test_held_prefix_of_a_long_stop_is_cut_at_a_shorter_stop_inside_it() -> None:
    # "abc" is held as the start of "abcd"; then "cx" completes inside it.
    assert run(["abcd", "cx"], ["zabc", "x"]) == (["z", "ab"], True, "")


def test_longest_possible_prefix_is_held_across_stops() -> None:
    matcher = StopMatcher(["xy", "abcd"])
    assert matcher.push("--abc") == ("--", False)
    assert matcher.flush() == "abc"


@pytest.mark.parametrize(
    ("stop", "chunks", "emitted"),
    [
        ("停止", ["你好停", "止了"], ["你好", ""]),
        # A skin-tone emoji is two code points: the modifier may arrive in the next chunk.
        ("👋🏽", ["hi 👋", "🏽!"], ["hi ", ""]),
        # A decomposed "é" (e + combining acute) split after the base letter.
        ("cafe\u0301", ["un cafe", "\u0301 noir"], ["un ", ""]),
    ],
)
def test_unicode_stop_split_across_chunks(stop: str, chunks: list[str], emitted: list[str]) -> None:
    assert run([stop], chunks) == (emitted, True, "")


def test_unicode_prefix_that_does_not_complete_is_released_whole() -> None:
    assert run(["👋🏽"], ["hi 👋", "🏿"]) == (["hi ", "👋🏿"], False, "")


TEXT = "Say 停止 now</s>tail"
BEFORE_STOP = "Say 停止 now"


@pytest.mark.parametrize("cuts", list(itertools.combinations(range(1, len(TEXT)), 2)))
def test_every_chunking_emits_exactly_the_text_before_the_stop(cuts: tuple[int, int]) -> None:
    first, second = cuts
    chunks = [TEXT[:first], TEXT[first:second], TEXT[second:]]
    emitted, stopped, rest = run(["</s>"], chunks)
    assert stopped
    assert "".join(emitted) == BEFORE_STOP
    assert rest == ""


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_text_without_a_stop_comes_out_whole_in_order(size: int) -> None:
    text = "a <b </ c </x 停"
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    emitted, stopped, rest = run(["</s>", "停止"], chunks)
    assert not stopped
    assert "".join(emitted) + rest == text


def test_the_stop_string_that_was_hit_is_named() -> None:
    matcher = StopMatcher(["END", "STOP", "TO"])
    assert matcher.hit == ""
    assert matcher.push("go ST") == ("go ", False)
    # All three are in "STOP END" now: the one that starts first is the one hit.
    assert matcher.push("OP END") == ("", True)
    assert matcher.hit == "STOP"
    tie = StopMatcher(["STOP", "ST"])
    assert tie.push("xSTOP") == ("x", True)
    assert tie.hit == "STOP"  # starting at the same place: the one given first

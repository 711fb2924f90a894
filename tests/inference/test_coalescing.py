"""Coalescing a local model's stream: what may merge (and what never does), and when a gathered
batch goes out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from services.inference.backends.base import Delta, Event, Finished, TokenLogprob, ToolCallDelta, TopLogprob
from services.inference.coalescing import coalesced, merged

A = TokenLogprob("A", -0.5, b"A", (TopLogprob("A", -0.5, b"A"), TopLogprob("B", -1.5, b"B")))
B = TokenLogprob(" b", -0.25, b" b")
C = TokenLogprob("\xe9", -2.0, b"\xc3")
DONE = Finished("A b\xe9", 3, 3, "stop")


def test_text_deltas_merge_into_one_with_their_tokens_and_logprobs_in_order() -> None:
    assert merged([Delta("A", 1, (A,)), Delta(" b", 1, (B,)), Delta("", 1, (C,)), Delta("\xe9", 0)]) == [
        Delta("A b\xe9", 3, (A, B, C))
    ]


def test_a_finished_is_never_merged_and_stays_last() -> None:
    events: list[Event] = [Delta("A", 1, (A,)), Delta(" b", 1, (B,)), DONE]
    assert merged(events) == [Delta("A b", 2, (A, B)), DONE]


def test_a_tool_calls_argument_pieces_join_the_piece_before_them() -> None:
    pieces = [
        ToolCallDelta(0, "call_1", "weather", ""),
        ToolCallDelta(0, arguments='{"city":'),
        ToolCallDelta(0, arguments=' "Oslo"}'),
    ]
    assert merged(pieces) == [ToolCallDelta(0, "call_1", "weather", '{"city": "Oslo"}')]


def test_a_new_call_starts_a_new_piece_even_at_the_same_index() -> None:
    pieces = [
        ToolCallDelta(0, "call_1", "weather", "{}"),
        ToolCallDelta(1, arguments="{"),  # another call's piece: never added to call 0
        ToolCallDelta(1, "call_2", "clock", ""),  # an id and name start a call
        ToolCallDelta(1, arguments="}"),
    ]
    assert merged(pieces) == [
        ToolCallDelta(0, "call_1", "weather", "{}"),
        ToolCallDelta(1, arguments="{"),
        ToolCallDelta(1, "call_2", "clock", "}"),
    ]


def test_text_and_tool_calls_keep_their_order_and_only_neighbours_of_a_kind_merge() -> None:
    events: list[Event] = [
        Delta("Let me ", 2),
        Delta("check.", 2),
        ToolCallDelta(0, "call_1", "weather", ""),
        ToolCallDelta(0, arguments="{}"),
        Delta("Done", 1),
        ToolCallDelta(0, arguments=" "),  # after text: not joined across it
        Finished("Let me check.Done", 4, 6, "tool_calls"),
    ]
    assert merged(events) == [
        Delta("Let me check.", 4),
        ToolCallDelta(0, "call_1", "weather", "{}"),
        Delta("Done", 1),
        ToolCallDelta(0, arguments=" "),
        events[-1],
    ]


def test_nothing_to_merge_leaves_every_event_as_it_was() -> None:
    assert merged([]) == []
    alone: list[Event] = [Delta("A", 1, (A,)), ToolCallDelta(0, "c", "clock", ""), DONE]
    assert merged(alone) == alone


class Source:
    """A stream the test feeds: every item put is yielded (an exception is raised) when it comes."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Event | Exception] = asyncio.Queue()
        self.closed = False

    def put(self, *items: Event | Exception) -> None:
        for item in items:
            self.items.put_nowait(item)

    async def events(self) -> AsyncGenerator[Event, None]:
        try:
            while True:
                item = await self.items.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            self.closed = True


async def test_the_first_delta_goes_at_once_and_later_ones_gather_until_the_last_event() -> None:
    source = Source()
    stream = coalesced(source.events(), interval_s=30)
    started = time.monotonic()
    source.put(Delta("A", 1, (A,)))
    assert await anext(stream) == Delta("A", 1, (A,))
    source.put(Delta(" b", 1, (B,)))
    gathered = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    assert not gathered.done(), "a delta within the interval waits for the next ones"
    source.put(Delta("\xe9", 1, (C,)), DONE)
    assert await gathered == Delta(" b\xe9", 2, (B, C))
    assert await anext(stream) == DONE
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert time.monotonic() - started < 10, "the Finished ended the 30 s wait"
    assert source.closed


async def test_a_delta_after_a_quiet_interval_goes_at_once() -> None:
    source = Source()
    stream = coalesced(source.events(), interval_s=0.3)
    source.put(Delta("A", 1))
    assert await anext(stream) == Delta("A", 1)
    await asyncio.sleep(0.5)
    sent = time.monotonic()
    source.put(Delta(" b", 1))
    assert await anext(stream) == Delta(" b", 1)
    assert time.monotonic() - sent < 0.25
    source.put(DONE)
    assert await anext(stream) == DONE
    await stream.aclose()


async def test_a_failure_midway_comes_after_every_delta_before_it() -> None:
    source = Source()
    stream = coalesced(source.events(), interval_s=30)
    source.put(Delta("A", 1))
    assert await anext(stream) == Delta("A", 1)
    source.put(Delta(" b", 1), ToolCallDelta(0, "call_1", "clock", ""), RuntimeError("engine crashed"))
    assert await anext(stream) == Delta(" b", 1)
    assert await anext(stream) == ToolCallDelta(0, "call_1", "clock", "")
    with pytest.raises(RuntimeError, match="engine crashed"):
        await anext(stream)
    assert source.closed


async def test_a_failure_before_any_event_is_raised_at_once() -> None:
    source = Source()
    stream = coalesced(source.events(), interval_s=30)
    source.put(ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        await anext(stream)


async def test_a_slow_reader_gets_everything_already_there_as_one_message() -> None:
    source = Source()
    source.put(
        Delta("A", 1),
        Delta(" b", 1),
        ToolCallDelta(0, "c", "clock", ""),
        ToolCallDelta(0, arguments="{}"),
        DONE,
    )
    events = [event async for event in coalesced(source.events(), interval_s=0)]
    assert events == [Delta("A b", 2), ToolCallDelta(0, "c", "clock", "{}"), DONE]


async def test_closing_the_stream_early_closes_the_source() -> None:
    source = Source()
    stream = coalesced(source.events(), interval_s=30)
    source.put(Delta("A", 1), Delta(" b", 1))
    assert await anext(stream) == Delta("A b", 2)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the caller left while the stream waited for the model
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert source.closed

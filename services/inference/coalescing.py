"""Deltas that arrive together go out as one: fewer messages per token across the mesh's hops."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import TypeVar, cast

from services.inference.backends.base import Delta, Event, Finished, ToolCallDelta

E = TypeVar("E", bound=Event)


def _joined(last: Event, event: Event) -> Event | None:
    """`last` and `event` as one event, or None where they must stay two."""
    if isinstance(last, Delta) and isinstance(event, Delta):
        return Delta(last.text + event.text, last.tokens + event.tokens, last.logprobs + event.logprobs)
    # A call's later pieces only add to its arguments; a piece with an id or a name starts a call.
    if (
        isinstance(last, ToolCallDelta)
        and isinstance(event, ToolCallDelta)
        and last.index == event.index
        and not event.id
        and not event.name
    ):
        return ToolCallDelta(last.index, last.id, last.name, last.arguments + event.arguments)
    return None


def merged(events: Iterable[E]) -> list[E]:
    """Adjacent text deltas as one (text and logprobs concatenated, tokens summed) and a tool call's
    argument pieces added to the piece before them; every other event (a Finished, a new call, text
    beside a call) stays where it is, so the order and every field are kept."""
    out: list[E] = []
    for event in events:
        joined = _joined(out[-1], event) if out else None
        if joined is None:
            out.append(event)
        else:
            out[-1] = cast(E, joined)
    return out


class _Gathering:
    """The events a reading task has taken from the source and the sending side has not yet sent."""

    def __init__(self, events: AsyncIterator[Event]) -> None:
        self.ready: deque[Event] = deque()
        # The source's exception, raised after the events that came before it.
        self.failure: Exception | None = None
        # A Finished came: nothing more is worth waiting for. Ended: the source has no more to give.
        self.finished = self.ended = False
        self._wait: asyncio.Future[None] | None = None
        # Whether the sending side waits for any event (it has none) or only for the last one.
        self._any = False
        self._reader = asyncio.create_task(self._read(events))

    async def _read(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                self.ready.append(event)
                self.finished = self.finished or isinstance(event, Finished)
                if self._any or self.finished:
                    self._wake()
        except Exception as error:
            self.failure = error
        finally:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        if self._wait is not None and not self._wait.done():
            self._wait.set_result(None)

    async def _until(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._any, self._wait = seconds is None, loop.create_future()
        timer = loop.call_later(seconds, self._wake) if seconds is not None else None
        try:
            await self._wait
        finally:
            self._wait = None
            if timer is not None:
                timer.cancel()

    async def any_event(self) -> None:
        """Until the source hands over an event or ends."""
        if not self.ready and not self.ended:
            await self._until(None)

    async def rest_of(self, seconds: float) -> None:
        """Until `seconds` pass, cut short when the last event comes (a Finished, the end, a failure)."""
        if seconds > 0 and not self.finished and not self.ended:
            await self._until(seconds)

    async def close(self) -> None:
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            pass


async def coalesced(events: AsyncIterator[Event], interval_s: float) -> AsyncGenerator[Event, None]:
    """The source's events, those that arrive within `interval_s` of the last ones sent merged (see
    `merged`). The first event, and one that comes after a quiet interval, goes on at once; the last
    one (a Finished, the source's end or its failure) ends the wait, so nothing is held after it.

    The source is read by a task of its own, so it keeps running while a batch gathers; closing this
    generator cancels that task, which closes the source (and so stops the model)."""
    loop = asyncio.get_running_loop()
    gathering = _Gathering(events)
    sent_at: float | None = None
    try:
        while True:
            await gathering.any_event()
            if sent_at is not None:
                await gathering.rest_of(sent_at + interval_s - loop.time())
            batch = list(gathering.ready)
            gathering.ready.clear()
            sent_at = loop.time()
            for event in merged(batch):
                yield event
            if gathering.ended and not gathering.ready:
                if gathering.failure is not None:
                    raise gathering.failure
                return
    finally:
        await gathering.close()

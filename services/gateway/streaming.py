"""Server-Sent Events relayed from an orchestrator stream, shared by every streaming endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.errors import IncompleteGeneration, MeshError
from services.gateway.errors import error_body, request_id_of

# One orchestrator message → the SSE events it becomes.
Render = Callable[[Any], Iterable[ServerSentEvent]]
# A failure after the stream began → the events that tell the client (the stream then ends).
RenderError = Callable[[MeshError, str], Iterable[ServerSentEvent]]


def error_event(error: MeshError, request_id: str) -> list[ServerSentEvent]:
    """Our streams' failure: an `error` event carrying the error body every endpoint uses."""
    body = error_body(error.code, error.message, request_id)
    return [ServerSentEvent(json.dumps(body, separators=(",", ":")), event="error")]


async def close_stream(stream: AsyncGenerator[Any, None]) -> None:
    """Stop a client's stream before its end, which cancels the call (and so the model's work)."""
    await stream.aclose()


async def sse_from_stream(
    request: Request,
    stream: AsyncGenerator[Any, None],
    render: Render,
    render_error: RenderError = error_event,
    closing: Sequence[ServerSentEvent] = (),
    sep: str | None = None,
) -> EventSourceResponse:
    """Answer with SSE frames for the stream's messages, then the `closing` events.

    The first message is awaited before answering, so a request that fails at once (unknown model or
    session, prompt too long, mesh down) gets its proper HTTP status instead of a 200 with an error
    event. A failure after that ends the stream with render_error's events; a client that leaves
    closes the stream, which cancels the call and stops the model.
    """
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise IncompleteGeneration("the stream ended without a result") from None
    except BaseException:
        await close_stream(stream)
        raise
    return EventSourceResponse(
        _relay(first, stream, render, render_error, closing, request_id_of(request)),
        ping=request.app.state.settings.sse_ping_s,
        sep=sep,
    )


async def _relay(
    first: Any,
    stream: AsyncGenerator[Any, None],
    render: Render,
    render_error: RenderError,
    closing: Sequence[ServerSentEvent],
    request_id: str,
) -> AsyncIterator[ServerSentEvent]:
    try:
        for event in render(first):
            yield event
        async for message in stream:
            for event in render(message):
                yield event
    except MeshError as error:
        for event in render_error(error, request_id):
            yield event
    finally:
        await close_stream(stream)
    for event in closing:
        yield event

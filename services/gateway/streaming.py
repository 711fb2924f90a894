"""Server-Sent Events and NDJSON lines relayed from an orchestrator stream, shared by every
streaming endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.errors import IncompleteGeneration, MeshError
from services.gateway.errors import error_body, request_id_of

# One orchestrator message → the SSE events it becomes.
Render = Callable[[Any], Iterable[ServerSentEvent]]
# A failure after the stream began → the events that tell the client (the stream then ends).
RenderError = Callable[[MeshError, str], Iterable[ServerSentEvent]]
# One orchestrator message → the JSON lines it becomes; a failure after the stream began → its lines.
RenderLines = Callable[[Any], Iterable[dict[str, Any]]]
RenderErrorLines = Callable[[MeshError, str], Iterable[dict[str, Any]]]
NDJSON = "application/x-ndjson"

Frame = TypeVar("Frame")


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
    first = await _first_message(stream)
    return EventSourceResponse(
        _relay(first, stream, render, render_error, closing, request_id_of(request)),
        ping=request.app.state.settings.sse_ping_s,
        sep=sep,
    )


async def ndjson_from_stream(
    request: Request,
    stream: AsyncGenerator[Any, None],
    render: RenderLines,
    render_error: RenderErrorLines,
) -> StreamingResponse:
    """Answer with one JSON object a line (`application/x-ndjson`) for the stream's messages, as
    Ollama streams; the first message is awaited first and a failure after it ends the stream with
    render_error's lines, as in sse_from_stream."""
    first = await _first_message(stream)
    lines = _relay(
        first,
        stream,
        lambda message: _encoded(render(message)),
        lambda error, request_id: _encoded(render_error(error, request_id)),
        (),
        request_id_of(request),
    )
    return StreamingResponse(lines, media_type=NDJSON)


def _encoded(objects: Iterable[dict[str, Any]]) -> list[str]:
    return [json.dumps(o, separators=(",", ":")) + "\n" for o in objects]


async def _first_message(stream: AsyncGenerator[Any, None]) -> Any:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise IncompleteGeneration("the stream ended without a result") from None
    except BaseException:
        await close_stream(stream)
        raise


async def _relay(
    first: Any,
    stream: AsyncGenerator[Any, None],
    render: Callable[[Any], Iterable[Frame]],
    render_error: Callable[[MeshError, str], Iterable[Frame]],
    closing: Sequence[Frame],
    request_id: str,
) -> AsyncIterator[Frame]:
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

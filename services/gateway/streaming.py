"""Server-Sent Events relayed from an orchestrator stream, shared by every streaming endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import grpc
from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.errors import IncompleteGeneration, MeshError
from services.gateway.errors import error_body, mesh_error_of, request_id_of

# One orchestrator message → the SSE events it becomes.
Render = Callable[[Any], Iterable[ServerSentEvent]]
# A failure after the stream began → the events that tell the client (the stream then ends).
RenderError = Callable[[MeshError, str], Iterable[ServerSentEvent]]


def error_event(error: MeshError, request_id: str) -> list[ServerSentEvent]:
    """Our streams' failure: an `error` event carrying the error body every endpoint uses."""
    body = error_body(error.code, error.message, request_id)
    return [ServerSentEvent(json.dumps(body, separators=(",", ":")), event="error")]


async def sse_from_call(
    request: Request,
    call: grpc.aio.UnaryStreamCall,
    render: Render,
    render_error: RenderError = error_event,
    closing: Sequence[ServerSentEvent] = (),
    sep: str | None = None,
) -> EventSourceResponse:
    """Answer with SSE frames for call's messages, then the `closing` events.

    The first message is awaited before answering, so a request that fails at once (unknown model or
    session, prompt too long, mesh down) gets its proper HTTP status instead of a 200 with an error
    event. A failure after that ends the stream with render_error's events; a client that leaves
    cancels the call, which stops the model.
    """
    try:
        first = await call.read()
    except BaseException:
        call.cancel()
        raise
    if first is grpc.aio.EOF:
        raise IncompleteGeneration("the stream ended without a result")
    return EventSourceResponse(
        _relay(first, call, render, render_error, closing, request_id_of(request)),
        ping=request.app.state.settings.sse_ping_s,
        sep=sep,
    )


async def _relay(
    first: Any,
    call: grpc.aio.UnaryStreamCall,
    render: Render,
    render_error: RenderError,
    closing: Sequence[ServerSentEvent],
    request_id: str,
) -> AsyncIterator[ServerSentEvent]:
    message = first
    try:
        while message is not grpc.aio.EOF:
            for event in render(message):
                yield event
            message = await call.read()
    except grpc.aio.AioRpcError as exc:
        for event in render_error(mesh_error_of(exc), request_id):
            yield event
    finally:
        call.cancel()
    for event in closing:
        yield event

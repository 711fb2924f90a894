"""Server-Sent Events relayed from an orchestrator stream, shared by every streaming endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from fastapi import Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.errors import IncompleteGeneration
from services.gateway.errors import error_body, mesh_error_of, request_id_of

Render = Callable[[Any], ServerSentEvent]


async def sse_from_call(
    request: Request, call: grpc.aio.UnaryStreamCall, render: Render
) -> EventSourceResponse:
    """Answer with SSE frames for call's messages (render turns each into one event).

    The first message is awaited before answering, so a request that fails at once (unknown model or
    session, prompt too long, mesh down) gets its proper HTTP status instead of a 200 with an error
    event. A failure after that ends the stream with an `error` event; a client that leaves cancels
    the call, which stops the model.
    """
    try:
        first = await call.read()
    except BaseException:
        call.cancel()
        raise
    if first is grpc.aio.EOF:
        raise IncompleteGeneration("the stream ended without a result")
    return EventSourceResponse(
        _relay(first, call, render, request_id_of(request)), ping=request.app.state.settings.sse_ping_s
    )


async def _relay(
    first: Any, call: grpc.aio.UnaryStreamCall, render: Render, request_id: str
) -> AsyncIterator[ServerSentEvent]:
    message = first
    try:
        while message is not grpc.aio.EOF:
            yield render(message)
            message = await call.read()
    except grpc.aio.AioRpcError as exc:
        error = mesh_error_of(exc)
        body = error_body(error.code, error.message, request_id)
        yield ServerSentEvent(json.dumps(body, separators=(",", ":")), event="error")
    finally:
        call.cancel()

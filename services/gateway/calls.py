"""The gateway's typed clients of the orchestrator and the store (made in the app's lifespan), and
the sampling fields every generating request turns into."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from fastapi import Request
from llmmesh.common.v1 import common_pb2

from services.gateway.errors import ClientClosedRequest
from services.orchestrator.client import OrchestratorClient
from services.store.client import StoreClient


def orchestrator(request: Request) -> OrchestratorClient:
    client: OrchestratorClient = request.app.state.orchestrator
    return client


def store(request: Request) -> StoreClient:
    client: StoreClient = request.app.state.store
    return client


Result = TypeVar("Result")


async def while_connected(request: Request, call: Awaitable[Result]) -> Result:
    """The call's result, unless the client leaves first: then the call is cancelled (which cancels
    the RPC, and the model stops) and ClientClosedRequest is raised. A stream stops the same way when
    its client leaves; a unary call would otherwise keep the model busy for its whole length."""
    answer = asyncio.ensure_future(call)
    left = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({answer, left}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
    if answer.done():
        return answer.result()
    answer.cancel()
    await asyncio.gather(answer, return_exceptions=True)
    raise ClientClosedRequest("the client closed the connection before the answer")


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (its body was read before the handler ran)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def stream_timeout_s(request: Request) -> float:
    """The backstop deadline of a whole stream (unary calls get the same one from their client)."""
    timeout_s: float = request.app.state.settings.request_timeout_s
    return timeout_s


class Sampling(Protocol):
    """The sampling fields every generating request schema has."""

    temperature: float | None
    top_p: float | None
    seed: int | None


def sampling_params(
    body: Sampling, max_tokens: int | None, stop: list[str] | None
) -> common_pb2.SamplingParams:
    """A request's sampling fields as the mesh's SamplingParams (unset fields keep the model's defaults)."""
    return common_pb2.SamplingParams(
        max_tokens=max_tokens or 0,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop or [],
    )

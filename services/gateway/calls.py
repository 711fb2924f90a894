"""The gateway's typed clients of the orchestrator and the store (made in the app's lifespan), and
the sampling fields every generating request turns into."""

from __future__ import annotations

from typing import Protocol

from fastapi import Request
from llmmesh.common.v1 import common_pb2

from services.orchestrator.client import OrchestratorClient
from services.store.client import StoreClient


def orchestrator(request: Request) -> OrchestratorClient:
    client: OrchestratorClient = request.app.state.orchestrator
    return client


def store(request: Request) -> StoreClient:
    client: StoreClient = request.app.state.store
    return client


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

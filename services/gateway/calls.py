"""The gateway's gRPC clients (stubs made in the app's lifespan) and the options every call carries."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request
from llmmesh.v1 import common_pb2, orchestrator_pb2_grpc, store_pb2_grpc


def orchestrator(request: Request) -> orchestrator_pb2_grpc.OrchestratorServiceStub:
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub = request.app.state.orchestrator
    return stub


def store(request: Request) -> store_pb2_grpc.StoreServiceStub:
    stub: store_pb2_grpc.StoreServiceStub = request.app.state.store
    return stub


def call_options(request: Request) -> dict[str, Any]:
    """The backstop deadline for a call that never answers (the request id and trace context travel in
    metadata added by the channel's interceptors)."""
    return {"timeout": request.app.state.settings.request_timeout_s}


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

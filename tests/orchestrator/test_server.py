"""The orchestrator's health on real servers: its own service is SERVING only while its channels reach
the store and the default pool (what the gateway's readiness asks), while its overall status, what a
liveness check asks, stays SERVING through a store outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.inference.config import InferenceSettings
from services.inference.server import create_server as create_inference
from services.orchestrator.client import SERVICE_NAME
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.server import create_server as create_orchestrator
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.fakes import ScriptedBackend
from tests.support.mesh import channel_to, free_port, running, scripted_registry

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def next_status(watch: grpc.aio.UnaryStreamCall, timeout_s: float = 10) -> int:
    """The next status a health Watch reports."""
    response = await asyncio.wait_for(watch.read(), timeout_s)
    assert isinstance(response, health_pb2.HealthCheckResponse), "the watch ended"
    return response.status


async def overall(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return response.status


async def test_the_orchestrator_service_follows_the_store_and_liveness_does_not(tmp_path: Path) -> None:
    registry = scripted_registry()
    store_settings = StoreSettings(port=free_port(), database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    inference, inference_port = create_inference(InferenceSettings(port=0), registry, [ScriptedBackend()])
    orchestrator, port = create_orchestrator(
        OrchestratorSettings(
            port=0,
            inference_addr=f"127.0.0.1:{inference_port}",
            store_addr=f"127.0.0.1:{store_settings.port}",
        ),
        registry,
    )
    async with running(inference), running(orchestrator), channel_to(port) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert await next_status(watch) == NOT_SERVING, "the store is not there yet"
        assert await overall(channel) == SERVING, "the process itself serves"

        store, _ = create_store(store_settings)
        async with running(store):
            assert await next_status(watch) == SERVING
        assert await next_status(watch) == NOT_SERVING, "the store went away"
        assert await overall(channel) == SERVING, "a liveness check must not restart the orchestrator"

        store, _ = create_store(store_settings)
        async with running(store):
            assert await next_status(watch) == SERVING, "back on the same port"
        watch.cancel()

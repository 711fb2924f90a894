"""The mesh's service token: with MESH_SERVICE_TOKEN set, a service answers only callers that present
it (health and reflection stay open for probes), and the typed clients present it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmmesh.store.v1 import store_pb2, store_pb2_grpc
from pydantic import SecretStr

from services.common.errors import MeshError
from services.store.client import StoreClient
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running, scripted_mesh, serve_app

TOKEN = "mesh-secret-" + "x" * 20


@pytest.fixture
async def store_port(tmp_path: Path) -> AsyncIterator[int]:
    settings = StoreSettings(port=0, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db", service_token=TOKEN)
    server, port = create_store(settings)
    async with running(server):
        yield port


async def test_a_caller_without_the_token_is_refused_but_probes_still_answer(store_port: int) -> None:
    async with channel_to(store_port) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await store_pb2_grpc.StoreServiceStub(channel).CreateApiKey(
                store_pb2.CreateApiKeyRequest(name="x")
            )
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(refused.value) == "invalid_service_token"
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("presented", [None, "wrong-token"])
async def test_the_typed_client_reports_a_refused_token_as_the_mesh_unavailable(
    store_port: int, presented: str | None
) -> None:
    store = StoreClient.connect(
        f"127.0.0.1:{store_port}", service_token=SecretStr(presented) if presented else None
    )
    try:
        with pytest.raises(MeshError) as refused:
            await store.list_api_keys(store_pb2.ListApiKeysRequest())
    finally:
        await store.close()
    assert (refused.value.status, refused.value.code) == (grpc.StatusCode.UNAVAILABLE, "unavailable")


async def test_the_typed_client_with_the_token_is_answered(store_port: int) -> None:
    store = StoreClient.connect(f"127.0.0.1:{store_port}", service_token=SecretStr(TOKEN))
    try:
        created = await store.create_api_key(store_pb2.CreateApiKeyRequest(name="app"))
    finally:
        await store.close()
    assert created.key.name == "app" and created.secret.startswith("lmk_")


async def test_a_whole_mesh_with_a_token_serves_and_a_gateway_without_it_is_unavailable(
    tmp_path: Path,
) -> None:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", service_token=TOKEN) as mesh:
        served = await mesh.client.post("/api/v1/ai/generate", json={"prompt": "hi"})
        assert mesh.settings is not None
        async for base in serve_app(mesh.settings.model_copy(update={"service_token": None})):
            async with httpx.AsyncClient(base_url=base) as stranger:
                refused = await stranger.post("/api/v1/ai/generate", json={"prompt": "hi"})
    assert served.status_code == 200, served.text
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "unavailable"

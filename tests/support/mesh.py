"""Helpers every kind of test uses: free ports, fresh PostgreSQL databases, in-process gRPC services on
port 0 and the whole mesh in-process with scripted models behind a real gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import uvicorn
from sqlalchemy.engine import make_url

from services.common.errors import ERROR_CODE_KEY
from services.common.ports import unused_port
from services.common.registry import Registry, parse_registry
from services.common.server import MeshServer
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.connections import protocol_options
from services.inference.backends import create_backend
from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings
from services.inference.server import create_server as create_inference
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.server import create_server as create_orchestrator
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.fake_providers import FakeProviders
from tests.support.fakes import ScriptedBackend

ROOT = Path(__file__).resolve().parent.parent.parent
# Set by .ci/run (and by anyone who wants PostgreSQL coverage locally), e.g.
# postgresql+asyncpg://postgres@127.0.0.1:5432/test
POSTGRES_URL_ENV = "LLM_MESH_TEST_POSTGRES_URL"


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range (see unused_port)."""
    return unused_port()


class fresh_postgres_database:
    """Create a uniquely named database on the server of `server_url`; drop it on exit."""

    def __init__(self, server_url: str) -> None:
        self._url = make_url(server_url)
        self._name = f"llmmesh_test_{uuid.uuid4().hex[:12]}"

    def _dsn(self, database: str) -> str:
        return self._url.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    async def __aenter__(self) -> str:
        connection = await asyncpg.connect(self._dsn(self._url.database or "postgres"))
        try:
            await connection.execute(f'CREATE DATABASE "{self._name}"')
        finally:
            await connection.close()
        return self._url.set(database=self._name).render_as_string(hide_password=False)

    async def __aexit__(self, *exc: object) -> None:
        connection = await asyncpg.connect(self._dsn(self._url.database or "postgres"))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')
        finally:
            await connection.close()


@asynccontextmanager
async def running(server: MeshServer) -> AsyncIterator[MeshServer]:
    """Start an in-process service (port already bound) and stop it gracefully afterwards."""
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def eventually(condition: Callable[[], object], timeout_s: float = 2.0) -> None:
    """Wait until condition() holds (a model noticing a cancel, say), for at most timeout_s; the
    caller asserts it afterwards, so a timeout fails there with its own message."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - state of a fake
        await asyncio.sleep(0.01)


@asynccontextmanager
async def channel_to(port: int) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


def error_code(exc: grpc.aio.AioRpcError) -> str:
    """The stable error code a service put in the trailing metadata."""
    return next((str(v) for k, v in exc.trailing_metadata() or () if k == ERROR_CODE_KEY), "")


@dataclass
class Gateway:
    client: httpx.AsyncClient
    backend: ScriptedBackend
    # The settings the gateway runs with (the other services' addresses among them).
    settings: GatewaySettings | None = None


async def serve_app(settings: GatewaySettings) -> AsyncIterator[str]:
    """The gateway app under uvicorn on a free port, in this event loop, with the gateway's own
    connection limits; yields its base URL."""
    async for base_url in serve_asgi(create_app(settings), **protocol_options(settings)):
        yield base_url


async def serve_asgi(app: Any, lifespan: str = "auto", **options: Any) -> AsyncIterator[str]:
    """An ASGI app under uvicorn on a free port, in this event loop; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan=lifespan, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "listening"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True  # do not wait for handlers still sleeping (slow fake providers)
        await task


def scripted_registry(*names: str, **sections: Any) -> Registry:
    """A registry of scripted models (the first is the default route's), plus any other sections."""
    names = names or ("scripted",)
    models = {name: {"backend": "tests.support.fakes:ScriptedBackend"} for name in names}
    return parse_registry({"models": models, **sections})


@asynccontextmanager
async def scripted_mesh(
    database_url: str,
    generation_timeout_s: float = 0.5,
    registry: Registry | None = None,
    backends: list[ScriptedBackend] | None = None,
    gateway_settings: dict[str, Any] | None = None,
    service_token: str | None = None,
    models: Sequence[Backend] = (),
    **orchestrator_settings: Any,
) -> AsyncIterator[Gateway]:
    """All four services in-process on real sockets, the models replaced by scripted backends
    (by default one, named "scripted", on the default route); `models` are hosted beside them (the
    real local model, which `registry` then names); `orchestrator_settings` override the
    orchestrator's (job worker timings, say), `gateway_settings` the gateway's (auth, limits);
    `service_token` is the mesh's MESH_SERVICE_TOKEN, for every service."""
    token = {"service_token": service_token} if service_token else {}
    backends = backends or [ScriptedBackend()]
    registry = registry or scripted_registry(*(b.name for b in backends))
    inference, inference_port = create_inference(
        InferenceSettings(port=0, **token), registry, [*backends, *models]
    )
    store, store_port = create_store(StoreSettings(port=0, database_url=database_url, **token))
    orchestrator, orchestrator_port = create_orchestrator(
        OrchestratorSettings(
            port=0,
            inference_addr=f"127.0.0.1:{inference_port}",
            store_addr=f"127.0.0.1:{store_port}",
            generation_timeout_s=generation_timeout_s,
            retry_backoff_s=0.01,
            **token,
            **orchestrator_settings,
        ),
        registry,
    )
    settings = GatewaySettings(
        port=0,
        orchestrator_addr=f"127.0.0.1:{orchestrator_port}",
        inference_addr=f"127.0.0.1:{inference_port}",
        store_addr=f"127.0.0.1:{store_port}",
        **token,
        **(gateway_settings or {}),
    )
    async with running(store), running(inference), running(orchestrator):
        async for base_url in serve_app(settings):
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                yield Gateway(client, backends[0], settings)


GEMMA = "gemma-3-270m"
SCRIPTED = "tests.support.fakes:ScriptedBackend"


@asynccontextmanager
async def gemma_mesh(database_url: str, model_path: Path, **options: Any) -> AsyncIterator[Gateway]:
    """scripted_mesh with the real Gemma 3 270M model: "gemma-3-270m" (the default route's model,
    after canned greetings: "hello" gets "Hi there!"), "gemma-embed" (the same weights as an
    embedding model) and "scripted" (`Gateway.backend`, for failures a real model cannot be asked
    for). `options` go to scripted_mesh (gateway_settings, ...). The generating model runs in the
    deterministic mode: the doors' tests compare one greedy request's answers whole (streamed and
    not, through two doors)."""
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 1024}
    registry = parse_registry(
        {
            "models": {
                "scripted": {"backend": SCRIPTED},
                GEMMA: {**gemma, "deterministic": True},
                "gemma-embed": {**gemma, "task": "embed"},
            },
            "canned": {"greetings": [{"match": "^hello$", "reply": "Hi there!"}]},
            "routes": {"default": [{"canned": "greetings"}, {"model": GEMMA}]},
        }
    )
    settings = InferenceSettings(port=0)
    backends = [create_backend(name, config, settings) for name, config in registry.models.items()]
    options.setdefault("generation_timeout_s", 60)
    async with scripted_mesh(database_url, registry=registry, backends=backends, **options) as mesh:
        yield mesh


# The provider keys the cloud backends read at start (fakes accept any).
PROVIDER_ENV = {
    "OPENAI_API_KEY": "sk-openai-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "GEMINI_API_KEY": "gm-test",
    "AWS_ACCESS_KEY_ID": "AKIATESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
}


@asynccontextmanager
async def provider_mesh(database_url: str, **registry: Any) -> AsyncIterator[tuple[Gateway, FakeProviders]]:
    """scripted_mesh beside local fakes of the four providers' APIs (tests/support/fake_providers.py),
    with "gpt" (OpenAI-compatible), "claude" (Anthropic), "gemini" and "nova" (Bedrock) served through
    their official SDKs, "scripted" (no tools, no constraints) and the routes/canned sets given.
    Yields the gateway and the fakes (their script and the requests they got). PROVIDER_ENV must be set."""
    fake = FakeProviders()
    async for url in serve_asgi(fake.app(), lifespan="off"):
        cloud = {
            "gpt": {"backend": "openai", "model_id": "gpt-test", "base_url": f"{url}/v1"},
            "claude": {"backend": "anthropic", "model_id": "claude-test", "base_url": url},
            "gemini": {"backend": "gemini", "model_id": "gemini-test", "base_url": url},
            "nova": {
                "backend": "bedrock",
                "model_id": "amazon.nova-lite-v1:0",
                "base_url": url,
                "region": "us-east-1",
            },
        }
        parsed = parse_registry({"models": {"scripted": {"backend": SCRIPTED}, **cloud}, **registry})
        settings = InferenceSettings(port=0)
        models = [create_backend(name, parsed.models[name], settings) for name in cloud]
        async with scripted_mesh(
            database_url, registry=parsed, models=models, generation_timeout_s=10
        ) as gateway:
            yield gateway, fake

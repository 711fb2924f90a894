"""Orchestrator service process."""

from __future__ import annotations

import httpx
from llmmesh.v1 import inference_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc, store_pb2_grpc

from services.common.grpc_options import create_channel
from services.common.registry import Registry, load_registry
from services.common.server import MeshServer, run_service
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.conversations import Conversations
from services.orchestrator.jobs import Jobs
from services.orchestrator.pipelines import Pipelines
from services.orchestrator.routing import Router, pool_addresses
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.sessions import SessionRuns
from services.orchestrator.store import StoreClient
from services.orchestrator.worker import JobWorker

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def create_server(settings: OrchestratorSettings, registry: Registry | None = None) -> tuple[MeshServer, int]:
    """Build the orchestrator bound to its port, with channels to every inference pool and the store."""
    registry = registry or load_registry(settings.registry_path)
    pool_channels = {
        pool: create_channel(address)
        for pool, address in pool_addresses(registry, settings.inference_addr).items()
    }
    store_channel = create_channel(settings.store_addr)
    router = Router(
        registry,
        {pool: inference_pb2_grpc.InferenceServiceStub(channel) for pool, channel in pool_channels.items()},
        settings,
    )
    store = StoreClient(store_pb2_grpc.StoreServiceStub(store_channel))
    sessions = SessionRuns(store, router)
    pipelines = Pipelines(store, router, registry, settings.pipeline_stall_s)
    http = httpx.AsyncClient(follow_redirects=False)
    jobs = Jobs(store, router, sessions, pipelines, settings, http)
    worker = JobWorker(store, jobs.execute, settings)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            OrchestratorServicer(router, Conversations(router, store), sessions, jobs, pipelines), s
        ),
    )

    async def start_worker() -> None:
        worker.start()

    server.on_startup(start_worker)
    # Running jobs finish (or go back to the queue) while the channels they use are still open.
    server.on_stopping(worker.stop)
    for channel in pool_channels.values():
        server.on_cleanup(channel.close)
    server.on_cleanup(store_channel.close)
    server.on_cleanup(http.aclose)
    return server, server.bind()


def serve() -> int:
    return run_service("orchestrator", OrchestratorSettings(), create_server)

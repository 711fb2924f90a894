"""Orchestrator service process."""

from __future__ import annotations

import httpx
from llmmesh.orchestrator.v1 import orchestrator_pb2_grpc

from services.common.registry import DEFAULT_POOL, Registry, load_registry
from services.common.server import MeshServer, run_service
from services.inference.client import InferenceClient
from services.orchestrator.batches import Batches
from services.orchestrator.client import SERVICE_NAME
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.generations import Generations
from services.orchestrator.jobs import Jobs
from services.orchestrator.knowledge import KnowledgeBases
from services.orchestrator.pipelines import Pipelines
from services.orchestrator.routing import Router
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.sessions import SessionRuns
from services.orchestrator.webhooks import WebhookGuard, WebhookSender
from services.orchestrator.worker import JobWorker
from services.store.client import StoreClient


def create_server(settings: OrchestratorSettings, registry: Registry | None = None) -> tuple[MeshServer, int]:
    """Build the orchestrator bound to its port, with channels to every inference pool and the store."""
    registry = registry or load_registry(settings.registry_path)
    pools = {
        pool: InferenceClient.connect(address, service_token=settings.service_token)
        for pool, address in registry.pool_addresses(settings.inference_addr).items()
    }
    store = StoreClient.connect(settings.store_addr, service_token=settings.service_token)
    router = Router(registry, pools, settings)
    sessions = SessionRuns(store, router)
    webhooks = WebhookGuard(settings.webhook_allowed_networks)
    pipelines = Pipelines(store, router, registry, settings.pipeline_stall_s, webhooks)
    # A redirect could lead a delivery to an address the guard refused: none is followed.
    http = httpx.AsyncClient(follow_redirects=False)
    secret = settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None
    sender = WebhookSender(webhooks, http, settings.webhook_timeout_s, secret)
    jobs = Jobs(store, router, sessions, pipelines, webhooks, sender)
    knowledge = KnowledgeBases(store, registry, router.embed, jobs.enqueue_work)
    jobs.knowledge = router.knowledge = knowledge
    generations = Generations(router, store)
    jobs.batches = batches = Batches(store, router, generations)
    worker = JobWorker(store, jobs.execute, settings)
    server = MeshServer(settings)
    # What every request may need, as the gateway's readiness does: while this orchestrator's own
    # channel cannot reach one, it is not ready even if the gateway's channel already can.
    server.depends_on("store", store.channel)
    server.depends_on("inference", pools[DEFAULT_POOL].channel)
    server.add_service(
        SERVICE_NAME,
        lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            OrchestratorServicer(router, generations, sessions, jobs, pipelines, knowledge, batches), s
        ),
    )

    async def start_worker() -> None:
        worker.start()

    server.on_startup(router.check_pools)
    server.on_startup(start_worker)
    # Running jobs finish (or go back to the queue) while the channels they use are still open.
    server.on_stopping(worker.stop)
    for pool in pools.values():
        server.on_cleanup(pool.close)
    server.on_cleanup(store.close)
    server.on_cleanup(http.aclose)
    return server, server.bind()


def serve() -> int:
    return run_service("orchestrator", OrchestratorSettings(), create_server)

"""The gateway's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from services.common import tracing
from services.common.grpc_options import create_channel
from services.common.logs import redact_secrets
from services.common.registry import DEFAULT_POOL, load_registry
from services.gateway.anthropic.routes import router as anthropic_router
from services.gateway.auth.admission import Admission, authenticate
from services.gateway.auth.routes import router as admin_router
from services.gateway.batches.routes import router as batches_router
from services.gateway.config import GatewaySettings
from services.gateway.conversations.routes import router as conversations_router
from services.gateway.cors import install_cors
from services.gateway.errors import document_body_errors, install_error_handlers
from services.gateway.generate.routes import router as generate_router
from services.gateway.health import router as health_router
from services.gateway.jobs.routes import router as jobs_router
from services.gateway.jobs.routes import status_router as job_status_router
from services.gateway.knowledge.routes import files_router, vector_stores_router
from services.gateway.knowledge.routes import router as knowledge_router
from services.gateway.middleware import RequestIdMiddleware, RequestLimitsMiddleware
from services.gateway.models.routes import router as models_router
from services.gateway.ollama.routes import router as ollama_router
from services.gateway.openai.routes import router as openai_router
from services.gateway.pages import install_console, install_docs
from services.gateway.realtime.routes import router as realtime_router
from services.gateway.realtime.socketio_app import mount_socketio
from services.gateway.responses.routes import router as responses_router
from services.gateway.sessions.routes import router as sessions_router
from services.gateway.sessions.routes import template_reads_router, templates_router
from services.gateway.sessions.routes import unprefixed_router as unprefixed_sessions_router
from services.orchestrator.client import SERVICE_NAME as ORCHESTRATOR_SERVICE
from services.orchestrator.client import OrchestratorClient
from services.store.client import StoreClient

log = logging.getLogger("llmmesh.gateway")


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    # uvicorn logs each WebSocket handshake with its URL, where a browser's API key may be.
    redact_secrets("uvicorn.error", "uvicorn.access")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every call's deadline is the backstop GATEWAY_REQUEST_TIMEOUT_S (see GatewaySettings).
        orchestrator = OrchestratorClient.connect(
            settings.orchestrator_addr, settings.request_timeout_s, settings.service_token
        )
        store = StoreClient.connect(settings.store_addr, settings.request_timeout_s, settings.service_token)
        # Only /readyz talks to the inference pools: each pool of the registry, probed for health (which
        # needs no service token).
        pools = load_registry(settings.registry_path).pool_addresses(settings.inference_addr)
        pool_channels = {
            "inference" if pool == DEFAULT_POOL else f"inference:{pool}": create_channel(address)
            for pool, address in pools.items()
        }
        app.state.settings = settings
        app.state.orchestrator = orchestrator
        app.state.store = store
        app.state.admission = Admission(settings, store)
        if settings.auth_enabled and settings.admin_token is None:
            log.warning("auth is on but GATEWAY_ADMIN_TOKEN is unset: no API key can be created here")
        # What /readyz asks each service: the orchestrator's own service status, which is SERVING only
        # while its channels reach the store and the default pool (the gateway's reaching them says
        # nothing of the orchestrator's), and the others' overall status.
        app.state.health_checks = {
            "orchestrator": (orchestrator.channel, ORCHESTRATOR_SERVICE),
            **{name: (channel, "") for name, channel in pool_channels.items()},
            "store": (store.channel, ""),
        }
        try:
            yield
        finally:
            await app.state.admission.limiter.close()
            await orchestrator.close()
            await store.close()
            for channel in pool_channels.values():
                await channel.close()

    app = FastAPI(
        title="LLM Mesh",
        version="0.1.0",
        summary="REST and Server-Sent Events in front of a gRPC mesh that serves LLM generations.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from packaged assets, not a CDN
        redoc_url=None,
    )
    # The last added runs first: the request id exists before any limit can refuse the request.
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        max_upload_bytes=settings.max_upload_bytes,
    )
    install_cors(app, settings)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    document_body_errors(app)
    app.include_router(health_router)
    install_docs(app)
    install_console(app, settings.api_prefix)
    app.include_router(admin_router)
    prefix = settings.api_prefix
    # The WebSocket and Socket.IO authenticate their connections themselves (a dependency cannot
    # answer a socket).
    app.include_router(realtime_router, prefix=prefix)
    mount_socketio(app, settings)
    # Each router with its prefix and the scopes a key needs for it (any one of them).
    for router, router_prefix, scopes in (
        (generate_router, prefix, ("generate",)),
        (models_router, prefix, ("generate",)),
        (templates_router, prefix, ("templates",)),
        (template_reads_router, prefix, ("templates", "sessions")),
        (sessions_router, prefix, ("sessions",)),
        (job_status_router, prefix, ("jobs", "generate", "sessions")),
        (jobs_router, prefix, ("jobs",)),
        (conversations_router, prefix, ("generate",)),
        (knowledge_router, prefix, ("generate",)),
        (files_router, "", ("generate",)),
        (vector_stores_router, "", ("generate",)),
        (openai_router, "", ("generate",)),
        (anthropic_router, "", ("generate",)),
        (ollama_router, "", ("generate",)),
        (responses_router, "", ("generate",)),
        (batches_router, "", ("generate",)),
        # with no prefix the API's own path is this one already
        *([(unprefixed_sessions_router, "", ("sessions",))] if prefix else []),
    ):
        app.include_router(router, prefix=router_prefix, dependencies=[Depends(authenticate(*scopes))])
    if tracing.enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # One server span per request; the per-message send/receive spans would add one per SSE chunk.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls="healthz,readyz", exclude_spans=["receive", "send"]
        )
    return app

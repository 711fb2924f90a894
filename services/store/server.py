"""Store service process: engine, migrations at start, health that follows the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health_pb2
from llmmesh.v1 import store_pb2, store_pb2_grpc

from services.common.server import MeshServer, run_service
from services.store.config import StoreSettings
from services.store.db import create_engine
from services.store.errors import StoreUnavailable
from services.store.migrate import upgrade_to_head
from services.store.repository import Repository
from services.store.servicer import StoreServicer

log = logging.getLogger("llmmesh.store")
SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name


def create_server(settings: StoreSettings) -> tuple[MeshServer, int]:
    """Build the store's server, bound to its port; migrations and health checks run on start."""
    engine = create_engine(settings.database_url)
    repository = Repository(engine)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: store_pb2_grpc.add_StoreServiceServicer_to_server(StoreServicer(repository), s),
    )
    watcher: asyncio.Task[None] | None = None

    async def startup() -> None:
        nonlocal watcher
        if settings.migrate_on_start:
            await upgrade_to_head(engine)
        await repository.ping()
        watcher = asyncio.create_task(_follow_database(server, repository, settings.health_check_interval_s))

    async def cleanup() -> None:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await engine.dispose()

    server.on_startup(startup)
    server.on_cleanup(cleanup)
    return server, server.bind()


async def _follow_database(server: MeshServer, repository: Repository, interval_s: float) -> None:
    """Report NOT_SERVING while the database is unreachable, SERVING again once it answers."""
    serving = True
    while True:
        await asyncio.sleep(interval_s)
        try:
            await repository.ping()
            healthy = True
        except StoreUnavailable:
            healthy = False
        if healthy != serving:
            serving = healthy
            log.warning("database %s", "reachable again" if healthy else "unreachable")
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if healthy
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", SERVICE_NAME):
                await server.health.set(name, status)


def serve() -> int:
    return run_service("store", StoreSettings(), create_server)

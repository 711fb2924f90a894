"""Store service process: engine, migrations at start, health that follows the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from grpc_health.v1 import health_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc
from sqlalchemy.engine import make_url

from services.common.server import MeshServer, run_service
from services.store.api_keys import ApiKeys
from services.store.config import StoreSettings
from services.store.conversations import Conversations
from services.store.db import create_engine
from services.store.errors import StoreUnavailable
from services.store.knowledge import Knowledge
from services.store.metrics import QUEUE
from services.store.migrate import upgrade_to_head
from services.store.queue import NOTIFY_CHANNEL, JobQueue, JobSignals
from services.store.repository import Repository
from services.store.responses import StoredResponses
from services.store.servicer import StoreServicer

log = logging.getLogger("llmmesh.store")
SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name


def create_server(settings: StoreSettings) -> tuple[MeshServer, int]:
    """Build the store's server, bound to its port; migrations and health checks run on start."""
    engine = create_engine(settings.database_url)
    repository = Repository(engine)
    signals = JobSignals()
    queue = JobQueue(engine, signals)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: store_pb2_grpc.add_StoreServiceServicer_to_server(
            StoreServicer(
                repository,
                queue,
                ApiKeys(engine),
                Conversations(engine),
                StoredResponses(engine),
                Knowledge(engine),
            ),
            s,
        ),
    )
    tasks: list[asyncio.Task[None]] = []

    async def startup() -> None:
        if settings.migrate_on_start:
            await upgrade_to_head(engine)
        await repository.ping()
        QUEUE.track(queue, asyncio.get_running_loop(), settings.pipeline_stall_s)
        tasks.append(
            asyncio.create_task(_follow_database(server, repository, settings.health_check_interval_s))
        )
        if engine.dialect.name == "postgresql":
            tasks.append(asyncio.create_task(_listen_for_jobs(settings.database_url, signals)))

    async def stopping() -> None:
        signals.close()  # ends the workers' WatchJobs streams, which would hold the drain open

    async def cleanup() -> None:
        QUEUE.untrack(queue)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await repository.close()
        await engine.dispose()

    server.on_startup(startup)
    server.on_stopping(stopping)
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


async def _listen_for_jobs(database_url: str, signals: JobSignals) -> None:
    """LISTEN on the jobs channel, so a job queued through any store replica wakes this one's
    watchers; reconnects when the connection drops."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot listen for queued jobs; retrying", extra={"error": type(exc).__name__})
            await asyncio.sleep(1.0)
            continue
        try:
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_args: signals.notify())
            signals.notify()  # jobs queued while nobody listened
            await lost.wait()
            log.warning("job notification connection lost; reconnecting")
        finally:
            await connection.close(timeout=2)


def serve() -> int:
    return run_service("store", StoreSettings(), create_server)

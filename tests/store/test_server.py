"""Store service on a real grpc.aio server, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.store.config import StoreSettings
from services.store.errors import StoreUnavailable
from services.store.migrate import head_revision
from services.store.server import create_server
from tests.support.mesh import ROOT, channel_to, running


async def test_migrates_at_start_and_describes_its_database(database_url: str) -> None:
    server, port = create_server(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        description = await store_pb2_grpc.StoreServiceStub(channel).DescribeStore(
            store_pb2.DescribeStoreRequest()
        )
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="llmmesh.store.v1.StoreService")
        )
    assert description.dialect == database_url.split("+")[0]
    # The newest migration file is the head (each file's revision is named after it).
    newest = max(p.stem for p in (ROOT / "services/store/migrations/versions").glob("0*.py"))
    assert description.schema_revision == head_revision() == newest
    assert description.server_version[0].isdigit()
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_restart_on_a_migrated_database_keeps_its_revision(database_url: str) -> None:
    for _ in range(2):
        server, port = create_server(StoreSettings(port=0, database_url=database_url))
        async with running(server), channel_to(port) as channel:
            description = await store_pb2_grpc.StoreServiceStub(channel).DescribeStore(
                store_pb2.DescribeStoreRequest()
            )
        assert description.schema_revision == head_revision()


async def test_unreachable_database_fails_the_start(unused_port: int) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{unused_port}/nothing"
    server, port = create_server(StoreSettings(port=0, database_url=url, migrate_on_start=False))
    with pytest.raises(StoreUnavailable):
        await server.start()
    async with channel_to(port) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await store_pb2_grpc.StoreServiceStub(channel).DescribeStore(store_pb2.DescribeStoreRequest())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await server.stop()


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql://u@h/db", "mysql+aiomysql://u@h/db"])
def test_database_url_must_name_an_async_driver(url: str) -> None:
    with pytest.raises(ValueError, match="async driver"):
        StoreSettings(database_url=url)


async def test_reflection_lists_the_service_and_health(tmp_path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server, port = create_server(StoreSettings(port=0, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))
    async with running(server), channel_to(port) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = [r async for r in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert names >= {"llmmesh.store.v1.StoreService", "grpc.health.v1.Health"}


async def test_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: the hand-written migrations match models.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from services.store.db import create_engine
    from services.store.migrate import upgrade_to_head
    from services.store.tables import managed_by_orm, metadata

    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"include_name": managed_by_orm}), metadata
                )
            )
    finally:
        await engine.dispose()
    assert differences == []


async def test_upgrading_carries_existing_rows_into_the_default_project(database_url: str) -> None:
    """A store that ran before projects existed: its keys, templates, sessions, jobs and conversations
    move into the default project (keys with the scopes they effectively had), and are served there."""
    from alembic import command
    from sqlalchemy import text

    from services.store.db import create_engine
    from services.store.migrate import alembic_config

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0004_access"))
            now = "2026-11-30 12:00:00+00:00"
            for statement in (
                f"INSERT INTO api_keys (id, name, secret_hash, rpm_limit, tpm_limit, created_at) "
                f"VALUES ('0123456789ab', 'old', '{'0' * 64}', 0, 0, '{now}')",
                f"INSERT INTO prompt_templates (id, name, description, created_at) VALUES (1, 'old', '', '{now}')",
                "INSERT INTO template_versions (id, template_id, number, status, created_at) "
                f"VALUES (1, 1, 1, 'PUBLISHED', '{now}')",
                f"INSERT INTO sessions (id, session_code, version_id, created_at) VALUES (1, 'old-session', 1, '{now}')",
                "INSERT INTO jobs (id, kind, status, attempts, max_attempts, run_at, idempotency_key, "
                "request_fingerprint, request, step_index, created_at) "
                f"VALUES ('j1', 'generate', 'SUCCEEDED', 1, 5, '{now}', 'k', '', '{{}}', 0, '{now}')",
                # Two keys' own conversations with one id, and one made with auth off.
                f"INSERT INTO conversations (id, owner, conversation_id, created_at, updated_at) "
                f"VALUES (1, '0123456789ab', 'chat', '{now}', '{now}')",
                f"INSERT INTO conversations (id, owner, conversation_id, created_at, updated_at) "
                f"VALUES (2, 'ba9876543210', 'chat', '{now}', '{now}')",
                f"INSERT INTO conversations (id, owner, conversation_id, created_at, updated_at) "
                f"VALUES (3, '', 'chat', '{now}', '{now}')",
            ):
                await connection.execute(text(statement))
    finally:
        await engine.dispose()

    server, port = create_server(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        keys = (await stub.ListApiKeys(store_pb2.ListApiKeysRequest())).keys
        template = (await stub.GetTemplate(store_pb2.GetTemplateRequest(name="old"))).template
        session = (await stub.GetSession(store_pb2.GetSessionRequest(session_code="old-session"))).session
        job = (await stub.GetJob(store_pb2.GetJobRequest(job_id="j1"))).job
        conversations = [
            (await stub.GetConversation(store_pb2.GetConversationRequest(conversation_id=name))).conversation
            for name in ("chat", "0123456789ab:chat", "ba9876543210:chat")
        ]
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await stub.GetJob(store_pb2.GetJobRequest(job_id="j1"), metadata=(("x-mesh-project", "other"),))
    assert [(k.project_id, list(k.scopes)) for k in keys] == [
        ("default", ["generate", "sessions", "templates", "jobs"])
    ]
    assert template.name == "old" and session.version.number == 1
    assert job.project_id == "default" and job.idempotency_key == "k"
    assert [c.conversation_id for c in conversations] == ["chat", "0123456789ab:chat", "ba9876543210:chat"]
    assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND

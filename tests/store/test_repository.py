"""The repository on a real database, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.common.tenancy import DEFAULT_PROJECT
from services.store.db import create_engine
from services.store.errors import SessionNotFound, TemplateNotFound
from services.store.migrate import upgrade_to_head
from services.store.repository import NewAnswer, NewResult, Repository, unit_of_work
from services.store.tables import PromptTemplate


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_session_read_leaves_its_connection_transactional(engine: AsyncEngine) -> None:
    """A session read is one statement outside a transaction (autocommit on PostgreSQL); the connection
    goes back to the pool as it came, so the next unit of work on it still rolls back whole."""
    repository = Repository(engine)
    await repository.create_template(DEFAULT_PROJECT, "triage", "")
    await repository.add_version(DEFAULT_PROJECT, "triage", "Summarise.", None, {"model": "m"}, [("a", "A")])
    await repository.set_version_status(DEFAULT_PROJECT, "triage", 1, "PUBLISHED")
    session = await repository.create_session(DEFAULT_PROJECT, "", "triage", 0)
    await repository.put_answers(DEFAULT_PROJECT, session.session_code, [NewAnswer("a", "yes")])
    read = await repository.get_session(DEFAULT_PROJECT, session.session_code)
    assert [(a.option.key, a.value) for a in read.answers] == [("a", "yes")]
    with pytest.raises(SessionNotFound):
        await repository.get_session(DEFAULT_PROJECT, "no-such-session")

    with pytest.raises(RuntimeError):
        async with unit_of_work(async_sessionmaker(engine)) as db:
            db.add(PromptTemplate(project_id=DEFAULT_PROJECT, name="half-written", description=""))
            await db.flush()
            raise RuntimeError("the unit of work fails after its first write")
    with pytest.raises(TemplateNotFound):
        await repository.get_template(DEFAULT_PROJECT, "half-written")


async def _published_session(repository: Repository) -> str:
    await repository.create_template(DEFAULT_PROJECT, "triage", "")
    await repository.add_version(DEFAULT_PROJECT, "triage", "Summarise.", None, {"model": "m"}, [("a", "A")])
    await repository.set_version_status(DEFAULT_PROJECT, "triage", 1, "PUBLISHED")
    session = await repository.create_session(DEFAULT_PROJECT, "", "triage", 0)
    return session.session_code


async def test_a_session_read_sees_the_write_just_made(engine: AsyncEngine) -> None:
    """Reads run on a path of their own (a worker thread's connection on SQLite, a pool of their own
    on PostgreSQL): each sees what the engine's last unit of work committed."""
    repository = Repository(engine)
    code = await _published_session(repository)
    try:
        for value in ("yes", "no", "39 C"):
            await repository.put_answers(DEFAULT_PROJECT, code, [NewAnswer("a", value)])
            read = await repository.get_session(DEFAULT_PROJECT, code)
            assert [(a.option.key, a.value) for a in read.answers] == [("a", value)]
        await repository.save_result(DEFAULT_PROJECT, code, _result("first", "h1"))
        await repository.save_result(DEFAULT_PROJECT, code, _result("second", "h2"))
        read = await repository.get_session(DEFAULT_PROJECT, code)
        assert read.result is not None
        assert (read.result.llm_result, read.result.input_hash) == ("second", "h2")
    finally:
        await repository.close()


async def test_a_session_read_survives_the_database_dropping_its_connections(engine: AsyncEngine) -> None:
    """PostgreSQL reads are not pinged first: a connection the server dropped (a restart, a failover)
    fails as a disconnect, and the read is made again on a fresh one."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL case: SQLite has no server to drop connections")
    repository = Repository(engine)
    code = await _published_session(repository)
    try:
        await asyncio.gather(*(repository.get_session(DEFAULT_PROJECT, code) for _ in range(3)))
        async with engine.connect() as connection:
            dropped = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        assert dropped and dropped >= 1
        read = await repository.get_session(DEFAULT_PROJECT, code)
        assert read.session_code == code
    finally:
        await repository.close()


def _result(text_: str, input_hash: str) -> NewResult:
    return NewResult(text_, [{"role": "user", "content": "q"}], "m", {"prompt_tokens": 1}, input_hash)

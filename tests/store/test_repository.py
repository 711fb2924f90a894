"""The repository on a real database, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_sqlite_units_of_work_take_turns_in_arrival_order(sqlite_engine: AsyncEngine) -> None:
    """Left to SQLite's lock, pooled connections poll for the file and one can miss its turn for the
    whole busy timeout; the store queues its writers instead, first come first served."""
    sessions = async_sessionmaker(sqlite_engine, expire_on_commit=False)
    events: list[tuple[str, int]] = []

    async def write(n: int) -> None:
        async with unit_of_work(sessions) as db:
            events.append(("begin", n))
            await db.execute(text("SELECT count(*) FROM prompt_templates"))
            db.add(PromptTemplate(project_id=DEFAULT_PROJECT, name=f"t{n}", description=""))
            await db.flush()
            events.append(("end", n))

    await asyncio.gather(*(write(n) for n in range(40)))
    assert events == [(step, n) for n in range(40) for step in ("begin", "end")]
    async with sqlite_engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM prompt_templates")) == 40


async def test_a_sqlite_unit_of_work_holds_the_write_lock_from_its_first_read(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    """What a unit of work reads is what its writes apply to: another process cannot commit in between
    (the driver alone would begin the transaction only at the first write)."""
    other = sqlite3.connect(tmp_path / "store.db", timeout=0)
    try:
        async with unit_of_work(async_sessionmaker(sqlite_engine)) as db:
            await db.execute(text("SELECT count(*) FROM prompt_templates"))
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("DELETE FROM prompt_templates")
        other.execute("DELETE FROM prompt_templates")
        other.commit()
    finally:
        other.close()


async def test_a_sqlite_unit_of_work_inside_another_is_refused(sqlite_engine: AsyncEngine) -> None:
    """The inner one would wait for the outer's turn forever; it fails at once instead."""
    sessions = async_sessionmaker(sqlite_engine)
    async with unit_of_work(sessions):
        with pytest.raises(RuntimeError, match="inside another"):
            async with unit_of_work(sessions):
                pass
    async with unit_of_work(sessions) as db:
        assert await db.scalar(text("SELECT 1")) == 1

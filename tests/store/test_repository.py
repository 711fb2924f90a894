"""The repository on a real database, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.common.tenancy import DEFAULT_PROJECT
from services.store.db import create_engine
from services.store.errors import SessionNotFound, TemplateNotFound
from services.store.migrate import upgrade_to_head
from services.store.repository import NewAnswer, Repository, unit_of_work
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

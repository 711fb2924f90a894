"""The async SQLAlchemy engine, configured for SQLite or PostgreSQL from one URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for database_url; a SQLite file's folder is created, and WAL mode is on."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed while one writer commits; busy_timeout waits on a locked
        # database instead of failing at once; foreign keys are off by default in SQLite.
        # synchronous=NORMAL is what SQLite advises with WAL: a commit no longer waits for an fsync
        # (the WAL is synced at checkpoints), so writers queued on the lock wait far less; a crashed
        # process loses nothing, a power cut at most the last commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


# One writer at a time per SQLite engine, queued here in arrival order. Left to SQLite, every
# pooled connection that finds the file locked polls for it (sleeping up to 100 ms between tries),
# so under load a connection can miss its turn for the whole busy timeout and fail, though the
# lock was free most of that time.
_writers: WeakKeyDictionary[Engine, asyncio.Lock] = WeakKeyDictionary()
_holding: ContextVar[frozenset[int]] = ContextVar("sqlite_writer_holding", default=frozenset())


@asynccontextmanager
async def sqlite_writer_turn(engine: AsyncEngine) -> AsyncIterator[None]:
    """Wait for this engine's turn to write, first come first served; a transaction opened while
    this task already holds the turn would wait on itself forever, so it is refused."""
    sync_engine = engine.sync_engine
    holding = _holding.get()
    if id(sync_engine) in holding:
        raise RuntimeError("a SQLite transaction was opened inside another on the same engine")
    lock = _writers.setdefault(sync_engine, asyncio.Lock())
    async with lock:
        token = _holding.set(holding | {id(sync_engine)})
        try:
            yield
        finally:
            _holding.reset(token)

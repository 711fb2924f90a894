"""Single-statement reads at the least cost per call each database allows: the store's hot path.

A cached session run (a result screen reloaded) is one SELECT, and the mesh's most frequent request;
through the async engine it paid more in plumbing than in the query:
- on SQLite, aiosqlite runs each driver call on its connection's thread, and one SELECT is five
  hops there and back (cursor, execute, fetch, close, the rollback when the connection is returned),
  each a wake-up of both threads; here the whole statement runs through a plain (sync) engine on the
  same file in one hop to a worker thread;
- on PostgreSQL, the engine's pre-ping is a round trip before every statement, and switching a
  pooled connection to autocommit and back costs more; here a small pool of its own is in autocommit
  from the start and is not pinged: a connection the server dropped (a restart, a failover) fails
  its statement as a disconnect, which empties the pool, and the read is tried once more on a fresh
  one, as the ping would have done.
Only statements that need no transaction around them belong here (one SELECT sees one snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Executable, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Worker threads for SQLite reads: WAL lets readers run side by side, and the driver lets go of the
# GIL while SQLite works, so two overlap their waits; more only queue on the GIL (measured: 1, 2 and
# 4 threads cost the same CPU per read within noise, 2 the least).
SQLITE_READ_THREADS = 2
# PostgreSQL connections kept for these reads, beside the engine's own pool (10 + 10 overflow). No
# overflow: a read waits for one of them (cheap) rather than opening and closing a connection of its
# own under load (dear: a connection past the pool's size is closed when it is given back).
POSTGRES_READ_POOL = 10


class Reads:
    """Runs one SELECT and returns its rows, on the engine's database; `close` releases what it holds."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite: Engine | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._postgres: AsyncEngine | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # an in-memory database exists only in the connections of its engine: those stay on it
            self._sqlite = create_engine(url.set(drivername="sqlite"))
            event.listen(self._sqlite, "connect", _sqlite_pragmas)
            self._threads = ThreadPoolExecutor(SQLITE_READ_THREADS, thread_name_prefix="store-read")
        elif url.get_backend_name() == "postgresql":
            self._postgres = create_async_engine(
                url,
                pool_size=POSTGRES_READ_POOL,
                max_overflow=0,
                isolation_level="AUTOCOMMIT",
            )

    async def rows(self, statement: Executable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        """The statement's rows; database errors reach the caller as SQLAlchemy raises them."""
        if self._sqlite is not None and self._threads is not None:
            sqlite = self._sqlite

            def read() -> Sequence[Any]:
                with sqlite.connect() as connection:
                    return connection.execute(statement, parameters).all()

            return await asyncio.get_running_loop().run_in_executor(self._threads, read)
        if self._postgres is not None:
            try:
                return await self._read(self._postgres, statement, parameters)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                return await self._read(self._postgres, statement, parameters)
        return await self._read(self._engine, statement, parameters)

    @staticmethod
    async def _read(
        engine: AsyncEngine, statement: Executable, parameters: Mapping[str, Any]
    ) -> Sequence[Any]:
        async with engine.connect() as connection:
            return (await connection.execute(statement, parameters)).all()

    async def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self._sqlite is not None:
            self._sqlite.dispose()
        if self._postgres is not None:
            await self._postgres.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The file is in WAL mode already (the async engine set it, and it persists); a reader waits on a
    # locked database (a checkpoint) as the engine's connections do, instead of failing at once.
    dbapi_connection.execute("PRAGMA busy_timeout=5000")

"""Every query the store runs. Other services reach the database only through the store's gRPC API."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.store.errors import StoreUnavailable
from services.store.migrate import current_revision


@dataclass(frozen=True)
class StoreDescription:
    dialect: str
    server_version: str
    schema_revision: str


class Repository:
    """Database access for the store service."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable("the database is unreachable") from exc

    async def describe(self) -> StoreDescription:
        def _describe(connection: Connection) -> StoreDescription:
            dialect = connection.dialect
            if dialect.name == "sqlite":
                version = sqlite3.sqlite_version
            else:
                version = ".".join(str(part) for part in dialect.server_version_info or ())
            return StoreDescription(dialect.name, version, current_revision(connection))

        try:
            async with self.engine.connect() as connection:
                return await connection.run_sync(_describe)
        except (DBAPIError, OSError) as exc:
            raise StoreUnavailable("the database is unreachable") from exc

"""Alembic migrations, applied programmatically on the store's own engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is already there).

    On SQLite, a migration that changes a table's constraints copies it into a new table and drops the
    old one; with foreign keys enforced, dropping a table that other rows reference fails. So foreign
    keys are off while migrating (SQLite's own advice for schema changes: the pragma only takes effect
    outside a transaction), checked at the end when anything was applied, and on again before the connection is reused.
    """

    def _upgrade(connection: Connection) -> bool:
        """Whether any revision was applied."""
        before = current_revision(connection)
        command.upgrade(alembic_config(connection), "head")
        return current_revision(connection) != before

    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        if sqlite:
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            migrated = await connection.run_sync(_upgrade)
            if sqlite and migrated:
                broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    raise RuntimeError(f"a migration left rows with broken references: {broken[:5]}")
            await connection.commit()
        finally:
            if sqlite:
                await connection.rollback()
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def current_revision(connection: Connection) -> str:
    return MigrationContext.configure(connection).get_current_revision() or ""

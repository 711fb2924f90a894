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
    """Bring the schema to the newest revision (a no-op when it is already there)."""

    def _upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def current_revision(connection: Connection) -> str:
    return MigrationContext.configure(connection).get_current_revision() or ""

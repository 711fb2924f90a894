"""Store settings (env prefix STORE_)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import PIPELINE_STALL_S, ServiceSettings, env_alias

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///.llm-mesh/store.db"


class StoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_")

    port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9403, ge=0, le=65535)
    # One URL picks the engine: sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db.
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=env_alias("STORE_DATABASE_URL", "database_url"),
    )
    # Apply Alembic migrations at start; switch off when a migration job owns the schema.
    migrate_on_start: bool = True
    # Seconds between database reachability checks that drive the health status.
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # The llmmesh_pipeline_runs_stalled gauge counts RUNNING runs with no progress for this long.
    pipeline_stall_s: float = Field(
        default=PIPELINE_STALL_S,
        gt=0,
        validation_alias=env_alias("PIPELINE_STALL_S", "pipeline_stall_s", "STORE_PIPELINE_STALL_S"),
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "database_url must use an async driver: sqlite+aiosqlite:///file.db "
                "or postgresql+asyncpg://user@host/db"
            )
        return url

"""Orchestrator settings (env prefix ORCHESTRATOR_; addresses of other services unprefixed)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings, env_alias


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_")

    port: int = Field(default=50051, ge=0, le=65535)
    inference_addr: str = Field(
        default="127.0.0.1:50052", validation_alias=env_alias("INFERENCE_ADDR", "inference_addr")
    )
    store_addr: str = Field(default="127.0.0.1:50053", validation_alias=env_alias("STORE_ADDR", "store_addr"))
    # The model registry (YAML) with the routes; unset means the built-in one (Gemma 3 270M).
    registry_path: Path | None = Field(
        default=None, validation_alias=env_alias("LLM_MESH_REGISTRY", "registry_path")
    )
    # A generation that has not finished after this many seconds, all tiers and retries together,
    # fails with DEADLINE_EXCEEDED.
    generation_timeout_s: float = Field(default=60.0, gt=0)
    # Attempts per tier for a transient failure (throttling, provider 5xx, timeout, connection lost).
    retry_attempts: int = Field(default=3, ge=1, le=10)
    # Backoff before retry n is retry_backoff_s * 2**(n-1), at most retry_max_backoff_s, with jitter.
    retry_backoff_s: float = Field(default=0.25, ge=0)
    retry_max_backoff_s: float = Field(default=2.0, ge=0)

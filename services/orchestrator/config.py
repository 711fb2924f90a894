"""Orchestrator settings (env prefix ORCHESTRATOR_; addresses of other services unprefixed)."""

from __future__ import annotations

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
    # The model used when a request names none.
    default_model: str = "gemma-3-270m"
    # A generation that has not finished after this many seconds fails with DEADLINE_EXCEEDED.
    generation_timeout_s: float = Field(default=60.0, gt=0)

"""Typed settings shared by every service, read from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ConfigError(Exception):
    """Configuration a service cannot start with; the message says what to fix and the process exits 2."""


def env_alias(name: str, field: str, *more: str) -> AliasChoices:
    """Accept a setting under a fixed environment name (no service prefix), its field name, and any
    further names given."""
    return AliasChoices(name, field, *more)


# Where the other services are, and the registry: one unprefixed variable each, the same in every
# service that needs it (the defaults are `llm-mesh up`'s ports).
OrchestratorAddr = Annotated[
    str,
    Field(default="127.0.0.1:50051", validation_alias=env_alias("ORCHESTRATOR_ADDR", "orchestrator_addr")),
]
InferenceAddr = Annotated[
    str, Field(default="127.0.0.1:50052", validation_alias=env_alias("INFERENCE_ADDR", "inference_addr"))
]
StoreAddr = Annotated[
    str, Field(default="127.0.0.1:50053", validation_alias=env_alias("STORE_ADDR", "store_addr"))
]
# The model registry (YAML); unset means the built-in one: Gemma 3 270M on llama.cpp.
RegistryPath = Annotated[
    Path | None, Field(default=None, validation_alias=env_alias("LLM_MESH_REGISTRY", "registry_path"))
]

# Shared by the orchestrator (the stalled flag of a run's view) and the store (the stalled-runs gauge).
PIPELINE_STALL_S = 600.0


class ServiceSettings(BaseSettings):
    """What every service process needs; each service subclasses it with its own env prefix."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    log_level: LogLevel = Field(default="INFO", validation_alias=env_alias("LOG_LEVEL", "log_level"))
    log_format: Literal["json", "text"] = Field(
        default="json", validation_alias=env_alias("LOG_FORMAT", "log_format")
    )
    # Seconds in-flight RPCs get to finish after SIGTERM before they are cancelled.
    shutdown_grace_s: float = Field(
        default=10.0, gt=0, validation_alias=env_alias("SHUTDOWN_GRACE_S", "shutdown_grace_s")
    )

    # A secret every mesh service presents to the others and requires of them (gRPC metadata), so a
    # process that can reach a service's port cannot call it (mint API keys at the store, say).
    # Unset: no check (the laptop default); the Kubernetes manifests set it from a Secret.
    service_token: SecretStr | None = Field(
        default=None, validation_alias=env_alias("MESH_SERVICE_TOKEN", "service_token")
    )

    # Prometheus metrics on http://host:metrics_port/metrics; 0 turns the endpoint off. Each service
    # has its own default, so a whole mesh on one machine needs no settings.
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @property
    def bind_address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def problem(cls, exc: ValidationError) -> str:
        """What is wrong with these settings, named by the environment variables that set them."""
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = cls.env_name(field) if field in cls.model_fields else field
            problems.append(f"{name}: {error['msg']}")
        return "; ".join(problems)

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable that sets `field` (e.g. STORE_PORT), for messages that tell an
        operator what to change."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            return alias.choices[0]
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

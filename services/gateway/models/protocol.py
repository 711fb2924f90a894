"""Schemas of the models and embeddings endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EMBED_INPUTS = 256
MAX_EMBED_CHARS = 32_000


class ModelLoad(BaseModel):
    running: int = Field(description="Requests the model is working on now")
    waiting: int = Field(
        description="Requests queued for it (an engine that takes turns serves one at a time)"
    )
    window_s: float = Field(description="How far back the figures below reach, in seconds")
    generations: int = Field(description="Generations that ended in the window")
    failures: int = Field(description="Of those, how many failed")
    mean_ttft_s: float = Field(description="Mean seconds to the first token, over the successful ones")
    mean_latency_s: float = Field(description="Mean seconds to the end, over the successful ones")
    tokens_per_s: float = Field(description="Completion tokens per second of generation time")


class ModelEntry(BaseModel):
    name: str
    backend: str = Field(description="llama_cpp, vllm, openai, anthropic, gemini, bedrock or module:Class")
    pool: str = Field(description="The inference pool that serves it")
    capabilities: list[Literal["generate", "embed"]]
    loaded: bool = Field(description="Loaded in its pool now (local models load at start or on first use)")
    pool_reachable: bool = Field(description="False when the orchestrator could not reach the model's pool")
    context_length: int = Field(description="Context window in tokens; 0 when unknown")
    load: ModelLoad | None = Field(
        description="What the model is doing now and did lately, as its pool reports it; null when the pool "
        "did not answer"
    )


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

"""Request and response schemas of the generate endpoint."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common import results
from services.gateway.jobs.protocol import JobFields, check_job_fields

MAX_PROMPT_CHARS = 32_000
MAX_TOKENS = 4_096

StopString = Annotated[str, Field(min_length=1, max_length=64)]


class GenerateRequest(JobFields):
    # Strict: "64" is not a number and "yes" is not a boolean; unknown fields are typos, not options.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The user's prompt.")
    system: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="Optional system instruction."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A model or route name (GET /api/v1/models lists them); the default route when omitted.",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="Upper bound on generated tokens."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 2, description="Fixed seed for repeatable sampling."
    )
    stop: list[StopString] | None = Field(default=None, max_length=4, description="Stop before any of these.")
    stream: bool = Field(default=False, description="Stream token deltas as Server-Sent Events.")
    run_async: bool = Field(
        default=False,
        alias="async",
        description="Queue the generation as a durable job: 202 with the job's status_url.",
    )

    @model_validator(mode="after")
    def _job_fields_need_async(self) -> GenerateRequest:
        check_job_fields(self, self.run_async, self.stream)
        return self

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must not be blank")
        return prompt


class GenerateResponse(results.Generation):
    request_id: str


class StreamDelta(BaseModel):
    """Data of an SSE `delta` event."""

    text: str


class StreamDone(BaseModel):
    """Data of the final SSE `done` event: the generation without its text (sent as deltas)."""

    tokens: int
    model: results.ServedModel
    route: results.ServedRoute
    tier: results.ServedTier
    finish_reason: results.FinishReason
    usage: results.Usage
    request_id: str

    @classmethod
    def of(cls, generation: results.Generation, request_id: str) -> StreamDone:
        return cls(**generation.model_dump(exclude={"text"}), request_id=request_id)

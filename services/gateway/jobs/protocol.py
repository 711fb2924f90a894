"""Request and response schemas of jobs (async generations and session runs) and pipeline runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common import results


class JobFields(BaseModel):
    """What any submission may add: where to be told when it ends, and how often to try."""

    model_config = ConfigDict(extra="forbid", strict=True)

    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Receives a POST with the job's status (as GET …/status returns it) when the job ends.",
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=20, description="Attempts before the job is FAILED (default 5)."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("webhook_url must be an absolute http:// or https:// URL")
        return url


def check_job_fields(fields: JobFields, run_async: bool, stream: bool) -> None:
    """Job options only mean something for a queued request, and a queued request cannot stream."""
    if run_async and stream:
        raise ValueError(
            "async and stream cannot both be true: a job's result is fetched from its status_url"
        )
    if not run_async and (fields.webhook_url is not None or fields.max_attempts is not None):
        raise ValueError("webhook_url and max_attempts apply to jobs: send them with async: true")


class JobAccepted(BaseModel):
    """The 202 answer to an async submission."""

    job_id: str
    status: results.JobStatusName
    status_url: str = Field(description="GET it for the job's status and, once SUCCEEDED, its result.")
    request_id: str


class JobStatus(results.JobStatus):
    request_id: str


class StartPipelineRun(JobFields):
    input: dict[str, Any] = Field(
        default_factory=dict, description="Variables the step templates see as `input`."
    )


class PipelineRunStatus(results.PipelineRunStatus):
    request_id: str


class PipelineStepInfo(BaseModel):
    name: str
    model: str | None


class PipelineInfo(BaseModel):
    name: str
    steps: list[PipelineStepInfo]


class PipelineList(BaseModel):
    pipelines: list[PipelineInfo]

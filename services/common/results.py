"""The JSON clients see for a generation, a session run, a job and a pipeline run, defined once.

One pydantic model each, used wherever that shape appears: the gateway's REST responses (which add
the request id), the results the orchestrator stores in the job queue, and its webhook payloads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, Field

from services.common.enums import (
    FINISH_REASON_NAMES,
    JOB_KIND_NAMES,
    JOB_STATUS_NAMES,
    PIPELINE_RUN_STATUS_NAMES,
    ROLE_NAMES,
)

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
Role = Literal["system", "user", "assistant"]
JobStatusName = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
JobKind = Literal["generate", "session", "pipeline_step", "webhook", "ingest", "batch_line"]
RunStatusName = Literal["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
# A step or webhook the run or job has not reached yet is PENDING.
StepStatusName = Literal["PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]

# Who answered: the model, the route the request ran on and the tier of it that served.
ServedModel = Annotated[
    str, Field(description='The model that generated the text ("canned:<set>" for a canned reply).')
]
ServedRoute = Annotated[
    str, Field(description="The route the request resolved to (naming a model gives a one-tier route of it).")
]
ServedTier = Annotated[
    int, Field(description="Position of the serving tier in the route, from 0; above 0 means a fallback.")
]


def timestamp(stamp: Timestamp, present: bool = True) -> datetime | None:
    """A protobuf timestamp as an aware UTC datetime, or None when unset."""
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def _loads(text: str) -> Any:
    return json.loads(text) if text else None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(
        default=0,
        description="Prompt tokens the engine read from its cache instead of evaluating (part of prompt_tokens).",
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)

    @classmethod
    def from_proto(cls, usage: common_pb2.Usage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        )


class Generation(BaseModel):
    """A finished generation: its text and who served it (model, route, tier), with usage."""

    text: str
    tokens: int = Field(description="Generated tokens (usage.completion_tokens).")
    model: ServedModel
    route: ServedRoute
    tier: ServedTier
    finish_reason: FinishReason
    usage: Usage

    @classmethod
    def from_proto(cls, result: common_pb2.GenerationResult) -> Generation:
        return cls(
            text=result.text,
            tokens=result.usage.completion_tokens,
            model=result.model,
            route=result.route,
            tier=result.tier,
            finish_reason=FINISH_REASON_NAMES[result.finish_reason],
            usage=Usage.from_proto(result.usage),
        )


class Message(BaseModel):
    role: Role
    content: str


class SessionRun(BaseModel):
    """A session's LLM result and the turns that produced it."""

    session_code: str
    llm_result: str
    messages: list[Message]
    cached: bool = Field(description="True when the stored result was reused: the inputs had not changed.")
    model: str
    usage: Usage
    created_at: datetime
    json_result: Any = Field(
        default=None,
        description="The result parsed, when the version's llm_options.json_schema asks for JSON (it "
        "validates against that schema; llm_result is its text); null otherwise.",
    )

    @classmethod
    def from_proto(cls, run: orchestrator_pb2.SessionRun) -> SessionRun:
        return cls._of(run.session_code, run, run.cached)

    @classmethod
    def from_stored(cls, session_code: str, stored: store_pb2.SessionResult) -> SessionRun:
        """A session's stored result, as a run that reused it returns it."""
        return cls._of(session_code, stored, cached=True)

    @classmethod
    def _of(
        cls, session_code: str, result: orchestrator_pb2.SessionRun | store_pb2.SessionResult, cached: bool
    ) -> SessionRun:
        return cls(
            session_code=session_code,
            llm_result=result.llm_result,
            messages=[Message(role=ROLE_NAMES[m.role], content=m.content) for m in result.messages],
            cached=cached,
            model=result.model,
            usage=Usage.from_proto(result.usage),
            created_at=timestamp(result.created_at) or datetime.now(UTC),
            json_result=_loads(result.json_result) if result.HasField("json_result") else None,
        )


class JobError(BaseModel):
    code: str
    message: str

    @classmethod
    def from_proto(cls, error: common_pb2.JobError) -> JobError:
        return cls(code=error.code, message=error.message)


class WebhookState(BaseModel):
    url: str
    status: StepStatusName
    attempts: int
    error: str | None


class JobProgress(BaseModel):
    done: int
    total: int
    unit: str


class JobStatus(BaseModel):
    """A job's status; once SUCCEEDED, its `result` is what the synchronous call would have returned."""

    job_id: str
    kind: JobKind
    status: JobStatusName
    attempts: int = Field(description="Attempts started so far (a worker that died mid-attempt counts).")
    max_attempts: int
    result: dict[str, Any] | None = Field(
        description="Once SUCCEEDED: what the synchronous call returns (generate: text, model, usage…; "
        "session: the session run)."
    )
    error: JobError | None = Field(description="The last attempt's error (also while a retry is queued).")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    webhook: WebhookState | None = None
    progress: JobProgress | None = Field(
        default=None, description="An ingestion job's progress: chunks of its document written so far."
    )

    @classmethod
    def from_proto(cls, job: orchestrator_pb2.Job) -> JobStatus:
        webhook = None
        if job.HasField("webhook"):
            delivery = job.webhook
            webhook = WebhookState(
                url=delivery.url,
                status=JOB_STATUS_NAMES.get(delivery.status, "PENDING"),
                attempts=delivery.attempts,
                error=delivery.error.message if delivery.HasField("error") else None,
            )
        return cls(
            job_id=job.id,
            kind=JOB_KIND_NAMES[job.kind],
            status=JOB_STATUS_NAMES[job.status],
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            result=_loads(job.result_json) if job.HasField("result_json") else None,
            error=JobError.from_proto(job.error) if job.HasField("error") else None,
            created_at=timestamp(job.created_at) or datetime.now(UTC),
            started_at=timestamp(job.started_at, job.HasField("started_at")),
            completed_at=timestamp(job.completed_at, job.HasField("completed_at")),
            webhook=webhook,
            progress=JobProgress(done=job.progress.done, total=job.progress.total, unit=job.progress.unit)
            if job.HasField("progress")
            else None,
        )


class PipelineStepStatus(BaseModel):
    name: str
    status: StepStatusName
    job_id: str | None
    attempts: int
    output: str | None
    error: JobError | None


class PipelineRunStatus(BaseModel):
    """A pipeline run with every step: PENDING until the run reaches it, then its job's status."""

    run_id: str
    pipeline: str
    status: RunStatusName
    stalled: bool = Field(description="RUNNING without progress for longer than the configured stall time.")
    input: dict[str, Any]
    current_step: str | None
    steps: list[PipelineStepStatus]
    output: str | None = Field(description="The last step's output, once the run SUCCEEDED.")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def from_proto(cls, run: orchestrator_pb2.PipelineRun) -> PipelineRunStatus:
        jobs = {job.step_index: job for job in run.steps}
        steps = []
        for index, name in enumerate(run.step_names):
            job = jobs.get(index)
            if job is None:
                steps.append(
                    PipelineStepStatus(
                        name=name, status="PENDING", job_id=None, attempts=0, output=None, error=None
                    )
                )
                continue
            result = _loads(job.result_json) if job.HasField("result_json") else None
            steps.append(
                PipelineStepStatus(
                    name=name,
                    status=JOB_STATUS_NAMES[job.status],
                    job_id=job.id,
                    attempts=job.attempts,
                    output=result["text"] if result else None,
                    error=JobError.from_proto(job.error) if job.HasField("error") else None,
                )
            )
        status = PIPELINE_RUN_STATUS_NAMES[run.status]
        return cls(
            run_id=run.id,
            pipeline=run.pipeline,
            status=status,
            stalled=run.stalled,
            input=_loads(run.input_json) or {},
            current_step=run.step_names[run.current_step] if run.current_step < len(run.step_names) else None,
            steps=steps,
            output=steps[-1].output if status == "SUCCEEDED" and steps else None,
            created_at=timestamp(run.created_at) or datetime.now(UTC),
            updated_at=timestamp(run.updated_at) or datetime.now(UTC),
            completed_at=timestamp(run.completed_at, run.HasField("completed_at")),
        )

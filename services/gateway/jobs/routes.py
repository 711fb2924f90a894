"""Transport for jobs and pipeline runs: submissions go to the orchestrator, job status to the store."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from llmmesh.v1 import orchestrator_pb2, store_pb2

from services.common.enums import JOB_STATUS_NAMES
from services.common.errors import InvalidArgument
from services.common.request_id import HTTP_HEADER
from services.common.results import job_json, pipeline_run_json
from services.gateway.auth.admission import caller_of
from services.gateway.calls import call_options, orchestrator, store
from services.gateway.errors import error_responses, request_id_of
from services.gateway.jobs import protocol as api

router = APIRouter(prefix="/api/v1", tags=["jobs"])

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class InvalidIdempotencyKey(InvalidArgument):
    code = "invalid_idempotency_key"


def job_options(request: Request, fields: api.JobFields) -> orchestrator_pb2.JobOptions:
    """The submission options of a request: its Idempotency-Key header and its job fields."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if key and not _IDEMPOTENCY_KEY.match(key):
        raise InvalidIdempotencyKey(
            f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters without spaces"
        )
    caller = caller_of(request)
    if key and caller.key_id:  # keys are per caller: another key's same key is another request
        key = f"{caller.key_id}:{hashlib.sha256(key.encode()).hexdigest()}"
    return orchestrator_pb2.JobOptions(
        idempotency_key=key, webhook_url=fields.webhook_url or "", max_attempts=fields.max_attempts or 0
    )


def accepted(request: Request, job: store_pb2.Job) -> JSONResponse:
    """202 with where to follow the job; the same answer when an idempotency key found an existing job."""
    status_url = f"/api/v1/ai/status/{job.id}"
    request_id = request_id_of(request)
    body = api.JobAccepted(
        job_id=job.id,
        status=JOB_STATUS_NAMES[job.status],  # type: ignore[arg-type]
        status_url=status_url,
        request_id=request_id,
    )
    return JSONResponse(
        body.model_dump(), status_code=202, headers={"Location": status_url, HTTP_HEADER: request_id}
    )


ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": api.JobAccepted,
        "description": "Queued (or, for a repeated Idempotency-Key, already queued)",
    }
}


async def _job_status(request: Request, job: store_pb2.Job) -> api.JobStatus:
    webhook = None
    if job.webhook_job_id:
        webhook = (
            await store(request).GetJob(
                store_pb2.GetJobRequest(request_id=request_id_of(request), job_id=job.webhook_job_id),
                **call_options(request),
            )
        ).job
    return api.JobStatus(**job_json(job, webhook), request_id=request_id_of(request))


@router.get("/ai/status/{job_id}", response_model=api.JobStatus, responses=error_responses(404))
async def job_status(job_id: str, request: Request) -> api.JobStatus:
    """A job's status; once SUCCEEDED, its `result` is what the synchronous call would have returned."""
    response = await store(request).GetJob(
        store_pb2.GetJobRequest(request_id=request_id_of(request), job_id=job_id), **call_options(request)
    )
    return await _job_status(request, response.job)


async def _cancel(job_id: str, request: Request) -> api.JobStatus:
    response = await store(request).CancelJob(
        store_pb2.CancelJobRequest(request_id=request_id_of(request), job_id=job_id), **call_options(request)
    )
    return await _job_status(request, response.job)


_CANCEL_ERRORS = error_responses(404, 409, descriptions={409: "The job already ended"})


@router.delete("/ai/status/{job_id}", response_model=api.JobStatus, responses=_CANCEL_ERRORS)
async def cancel_job(job_id: str, request: Request) -> api.JobStatus:
    """Cancel a QUEUED or RUNNING job (a running one stops at its worker's next lease renewal)."""
    return await _cancel(job_id, request)


@router.post("/ai/status/{job_id}/cancel", response_model=api.JobStatus, responses=_CANCEL_ERRORS)
async def cancel_job_by_post(job_id: str, request: Request) -> api.JobStatus:
    """The same as DELETE, for clients that cannot send one."""
    return await _cancel(job_id, request)


def _run_status(request: Request, view: orchestrator_pb2.PipelineRunView) -> api.PipelineRunStatus:
    return api.PipelineRunStatus(**pipeline_run_json(view), request_id=request_id_of(request))


@router.get("/pipelines", response_model=api.PipelineList, tags=["pipelines"])
async def list_pipelines(request: Request) -> api.PipelineList:
    """The pipelines of the model registry with their steps."""
    response = await orchestrator(request).ListPipelines(
        orchestrator_pb2.ListPipelinesRequest(request_id=request_id_of(request)), **call_options(request)
    )
    return api.PipelineList(
        pipelines=[
            api.PipelineInfo(
                name=p.name, steps=[api.PipelineStepInfo(name=s.name, model=s.model or None) for s in p.steps]
            )
            for p in response.pipelines
        ]
    )


@router.post(
    "/pipelines/{name}/runs",
    status_code=202,
    response_model=api.PipelineRunStatus,
    responses=error_responses(400, 404, 409),
    tags=["pipelines"],
)
async def start_pipeline_run(name: str, body: api.StartPipelineRun, request: Request) -> JSONResponse:
    """Start a run: the first step is queued now, each finished step queues the next."""
    response = await orchestrator(request).StartPipelineRun(
        orchestrator_pb2.StartPipelineRunRequest(
            request_id=request_id_of(request),
            pipeline=name,
            input_json=json.dumps(body.input),
            options=job_options(request, body),
        ),
        **call_options(request),
    )
    status = _run_status(request, response.run)
    location = f"/api/v1/pipelines/runs/{status.run_id}"
    return JSONResponse(
        status.model_dump(mode="json"),
        status_code=202,
        headers={"Location": location, HTTP_HEADER: request_id_of(request)},
    )


@router.get(
    "/pipelines/runs/{run_id}",
    response_model=api.PipelineRunStatus,
    responses=error_responses(404),
    tags=["pipelines"],
)
async def pipeline_run(run_id: str, request: Request) -> api.PipelineRunStatus:
    """A run with every step's status and output."""
    response = await orchestrator(request).GetPipelineRun(
        orchestrator_pb2.GetPipelineRunViewRequest(request_id=request_id_of(request), run_id=run_id),
        **call_options(request),
    )
    return _run_status(request, response.run)


@router.post(
    "/pipelines/runs/{run_id}/resume",
    response_model=api.PipelineRunStatus,
    responses=error_responses(404, 409, descriptions={409: "The run is not FAILED or CANCELLED"}),
    tags=["pipelines"],
)
async def resume_pipeline_run(run_id: str, request: Request) -> api.PipelineRunStatus:
    """Run a FAILED (or CANCELLED) run again from its failed step; earlier steps keep their outputs."""
    response = await orchestrator(request).ResumePipelineRun(
        orchestrator_pb2.ResumePipelineRunViewRequest(request_id=request_id_of(request), run_id=run_id),
        **call_options(request),
    )
    return _run_status(request, response.run)


@router.post(
    "/pipelines/runs/{run_id}/cancel",
    response_model=api.PipelineRunStatus,
    responses=error_responses(404, 409, descriptions={409: "The run already ended"}),
    tags=["pipelines"],
)
async def cancel_pipeline_run(run_id: str, request: Request) -> api.PipelineRunStatus:
    """Cancel a run and its queued or running step."""
    response = await orchestrator(request).CancelPipelineRun(
        orchestrator_pb2.CancelPipelineRunViewRequest(request_id=request_id_of(request), run_id=run_id),
        **call_options(request),
    )
    return _run_status(request, response.run)

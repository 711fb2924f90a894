"""Transport for jobs and pipeline runs: every call goes to the orchestrator."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common import results
from services.common.enums import JOB_KIND_VALUES, JOB_STATUS_VALUES, PIPELINE_RUN_STATUS_VALUES
from services.common.request_id import HTTP_HEADER
from services.gateway.calls import orchestrator
from services.gateway.errors import error_responses, request_id_of
from services.gateway.jobs import protocol as api
from services.gateway.jobs.submission import api_path, job_options
from services.gateway.paging import AFTER, LIMIT, Page, page_of

# A job's status and cancel: for any key that can queue one (generate and session runs take
# `async: true`), not only for the jobs scope; pipelines are the jobs scope's.
status_router = APIRouter(tags=["jobs"])
router = APIRouter(tags=["jobs"])


def _job_status(request: Request, job: orchestrator_pb2.Job) -> api.JobStatus:
    status = results.JobStatus.from_proto(job)
    return api.JobStatus(**status.model_dump(), request_id=request_id_of(request))


@status_router.get("/ai/status/{job_id}", response_model=api.JobStatus, responses=error_responses(404))
async def job_status(job_id: str, request: Request) -> api.JobStatus:
    """A job's status; once SUCCEEDED, its `result` is what the synchronous call would have returned."""
    response = await orchestrator(request).get_job(orchestrator_pb2.GetJobRequest(job_id=job_id))
    return _job_status(request, response.job)


async def _cancel(job_id: str, request: Request) -> api.JobStatus:
    response = await orchestrator(request).cancel_job(orchestrator_pb2.CancelJobRequest(job_id=job_id))
    return _job_status(request, response.job)


_CANCEL_ERRORS = error_responses(404, 409, descriptions={409: "The job already ended"})


@status_router.delete("/ai/status/{job_id}", response_model=api.JobStatus, responses=_CANCEL_ERRORS)
async def cancel_job(job_id: str, request: Request) -> api.JobStatus:
    """Cancel a QUEUED or RUNNING job (a running one stops at its worker's next lease renewal)."""
    return await _cancel(job_id, request)


@status_router.post("/ai/status/{job_id}/cancel", response_model=api.JobStatus, responses=_CANCEL_ERRORS)
async def cancel_job_by_post(job_id: str, request: Request) -> api.JobStatus:
    """The same as DELETE, for clients that cannot send one."""
    return await _cancel(job_id, request)


@router.get("/jobs", response_model=Page[results.JobStatus], responses=error_responses(404))
async def list_jobs(
    request: Request,
    kind: Annotated[
        list[results.JobKind] | None, Query(description="Only jobs of these kinds (repeatable).")
    ] = None,
    status: Annotated[
        list[results.JobStatusName] | None, Query(description="Only jobs in these statuses (repeatable).")
    ] = None,
    limit: int = LIMIT,
    after: str | None = AFTER,
) -> Page[results.JobStatus]:
    """The project's jobs, newest first: async generations and session runs, pipeline steps, and
    webhook deliveries. 404 when `after` names no job of the project."""
    response = await orchestrator(request).list_jobs(
        orchestrator_pb2.ListJobsRequest(
            limit=limit,
            after=after or "",
            kinds=[JOB_KIND_VALUES[k] for k in kind or ()],
            statuses=[JOB_STATUS_VALUES[s] for s in status or ()],
        )
    )
    jobs = [results.JobStatus.from_proto(job) for job in response.jobs]
    return page_of(request, jobs, lambda job: job.job_id, response.has_more)


def _run_status(request: Request, run: orchestrator_pb2.PipelineRun) -> api.PipelineRunStatus:
    status = results.PipelineRunStatus.from_proto(run)
    return api.PipelineRunStatus(**status.model_dump(), request_id=request_id_of(request))


@router.get("/pipelines", response_model=api.PipelineList, tags=["pipelines"])
async def list_pipelines(request: Request) -> api.PipelineList:
    """The pipelines of the model registry with their steps."""
    response = await orchestrator(request).list_pipelines(orchestrator_pb2.ListPipelinesRequest())
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
    response = await orchestrator(request).start_pipeline_run(
        orchestrator_pb2.StartPipelineRunRequest(
            pipeline=name, input_json=json.dumps(body.input), options=job_options(request, body)
        )
    )
    status = _run_status(request, response.run)
    location = api_path(request, f"/pipelines/runs/{status.run_id}")
    return JSONResponse(
        status.model_dump(mode="json"),
        status_code=202,
        headers={"Location": location, HTTP_HEADER: request_id_of(request)},
    )


@router.get(
    "/pipelines/runs",
    response_model=Page[results.PipelineRunStatus],
    responses=error_responses(404),
    tags=["pipelines"],
)
async def list_pipeline_runs(
    request: Request,
    status: Annotated[
        list[results.RunStatusName] | None, Query(description="Only runs in these statuses (repeatable).")
    ] = None,
    limit: int = LIMIT,
    after: str | None = AFTER,
) -> Page[results.PipelineRunStatus]:
    """The project's pipeline runs, newest first, each with every step's status. 404 when `after`
    names no run of the project."""
    response = await orchestrator(request).list_pipeline_runs(
        orchestrator_pb2.ListPipelineRunsRequest(
            limit=limit, after=after or "", statuses=[PIPELINE_RUN_STATUS_VALUES[s] for s in status or ()]
        )
    )
    runs = [results.PipelineRunStatus.from_proto(run) for run in response.runs]
    return page_of(request, runs, lambda run: run.run_id, response.has_more)


@router.get(
    "/pipelines/runs/{run_id}",
    response_model=api.PipelineRunStatus,
    responses=error_responses(404),
    tags=["pipelines"],
)
async def pipeline_run(run_id: str, request: Request) -> api.PipelineRunStatus:
    """A run with every step's status and output."""
    response = await orchestrator(request).get_pipeline_run(
        orchestrator_pb2.GetPipelineRunRequest(run_id=run_id)
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
    response = await orchestrator(request).resume_pipeline_run(
        orchestrator_pb2.ResumePipelineRunRequest(run_id=run_id)
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
    response = await orchestrator(request).cancel_pipeline_run(
        orchestrator_pb2.CancelPipelineRunRequest(run_id=run_id)
    )
    return _run_status(request, response.run)

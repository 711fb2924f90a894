"""What every route that queues a job shares: the submission options (Idempotency-Key header, job
fields) and the 202 answer that says where to follow the job."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.enums import JOB_STATUS_NAMES
from services.common.request_id import HTTP_HEADER
from services.gateway.errors import InvalidIdempotencyKey, request_id_of
from services.gateway.jobs.protocol import JobAccepted, JobFields

IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def job_options(request: Request, fields: JobFields) -> orchestrator_pb2.JobOptions:
    """The submission options of a request: its Idempotency-Key header and its job fields."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if key and not _IDEMPOTENCY_KEY.match(key):
        raise InvalidIdempotencyKey(
            f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters without spaces"
        )
    # Idempotency keys are per project, as every object is: the store looks them up in the caller's.
    return orchestrator_pb2.JobOptions(
        idempotency_key=key, webhook_url=fields.webhook_url or "", max_attempts=fields.max_attempts or 0
    )


def api_path(request: Request, path: str) -> str:
    """`path` of the mesh's REST API, under its prefix (GATEWAY_API_PREFIX)."""
    prefix: str = request.app.state.settings.api_prefix
    return f"{prefix}{path}"


def accepted(request: Request, job: orchestrator_pb2.Job) -> JSONResponse:
    """202 with where to follow the job; the same answer when an idempotency key found an existing job."""
    status_url = api_path(request, f"/ai/status/{job.id}")
    request_id = request_id_of(request)
    body = JobAccepted(
        job_id=job.id,
        status=JOB_STATUS_NAMES[job.status],
        status_url=status_url,
        request_id=request_id,
    )
    return JSONResponse(
        body.model_dump(), status_code=202, headers={"Location": status_url, HTTP_HEADER: request_id}
    )


# The OpenAPI `responses` entry of a route that may answer with `accepted`.
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobAccepted,
        "description": "Queued (or, for a repeated Idempotency-Key, already queued)",
    }
}

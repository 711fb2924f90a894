"""What the orchestrator tells the store's queue and what it shows of it.

Submissions carry a fingerprint of what was asked, so an idempotency key reused for another request
is refused. Clients see the orchestrator's own views of jobs and pipeline runs, never the store's
rows (whose lease tokens belong to the workers holding them).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2


def request_fingerprint(data: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the same key with another fingerprint is refused."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def job_view(job: store_pb2.Job, webhook: store_pb2.Job | None = None) -> orchestrator_pb2.Job:
    """A job as clients see it; `webhook` is the job delivering its webhook, once it has one."""
    view = orchestrator_pb2.Job(
        id=job.id,
        kind=job.kind,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        created_at=job.created_at,
        pipeline_run_id=job.pipeline_run_id,
        step_index=job.step_index,
    )
    if job.HasField("result_json"):
        view.result_json = job.result_json
    if job.HasField("error"):
        view.error.CopyFrom(job.error)
    if job.HasField("started_at"):
        view.started_at.CopyFrom(job.started_at)
    if job.HasField("completed_at"):
        view.completed_at.CopyFrom(job.completed_at)
    if job.webhook_url:
        view.webhook.url = job.webhook_url
        if webhook is not None:
            view.webhook.status = webhook.status
            view.webhook.attempts = webhook.attempts
            if webhook.HasField("error"):
                view.webhook.error.CopyFrom(webhook.error)
    return view

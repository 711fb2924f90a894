"""What the orchestrator tells the store's queue and what it shows of it.

Submissions carry a fingerprint of what was asked, so an idempotency key reused for another request
is refused. Clients see the orchestrator's own views of jobs and pipeline runs, never the store's
rows (whose lease tokens belong to the workers holding them).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from google.protobuf.message import Message
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2


def request_fingerprint(data: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the same key with another fingerprint is refused."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_JOB_FIELDS = (
    "id",
    "kind",
    "status",
    "attempts",
    "max_attempts",
    "result_json",
    "error",
    "created_at",
    "started_at",
    "completed_at",
    "pipeline_run_id",
    "step_index",
)
_RUN_FIELDS = (
    "id",
    "pipeline",
    "status",
    "input_json",
    "current_step",
    "created_at",
    "updated_at",
    "completed_at",
)

View = TypeVar("View", bound=Message)


def _copied(source: Message, view: View, names: tuple[str, ...]) -> View:
    """The view with the named fields of source (named alike in both), unset ones left unset."""
    for name in names:
        field = source.DESCRIPTOR.fields_by_name[name]
        if field.has_presence and not source.HasField(name):
            continue
        if field.message_type is not None:
            getattr(view, name).CopyFrom(getattr(source, name))
        else:
            setattr(view, name, getattr(source, name))
    return view


def job_view(job: store_pb2.Job, webhook: store_pb2.Job | None = None) -> orchestrator_pb2.Job:
    """A job as clients see it; `webhook` is the job delivering its webhook, once it has one."""
    view = _copied(job, orchestrator_pb2.Job(), _JOB_FIELDS)
    if job.webhook_url:
        view.webhook.url = job.webhook_url
        if webhook is not None:
            _copied(webhook, view.webhook, ("status", "attempts", "error"))
    return view


def run_view(
    run: store_pb2.PipelineRun, step_names: list[str], stalled: bool
) -> orchestrator_pb2.PipelineRun:
    """A pipeline run as clients see it, with its pipeline's step names and its steps' jobs."""
    view = _copied(run, orchestrator_pb2.PipelineRun(step_names=step_names, stalled=stalled), _RUN_FIELDS)
    view.steps.extend(job_view(job) for job in run.steps)
    return view

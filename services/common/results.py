"""The JSON clients see for a generation, a session run, a job and a pipeline run.

One shape wherever it appears: the REST responses, the results stored in the job queue, and the
webhook payloads.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.v1 import common_pb2, orchestrator_pb2, store_pb2

from services.common.enums import (
    FINISH_REASON_NAMES,
    JOB_STATUS_NAMES,
    PIPELINE_RUN_STATUS_NAMES,
    ROLE_NAMES,
)


def _usage(usage: common_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _time(stamp: Timestamp, present: bool = True) -> str | None:
    """RFC 3339 in UTC, or None for an unset timestamp."""
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime().isoformat(timespec="milliseconds") + "Z"


def generation_json(result: common_pb2.GenerationResult) -> dict[str, Any]:
    """A finished generation: its text and who served it (model, route, tier), with usage."""
    return {
        "text": result.text,
        "tokens": result.usage.completion_tokens,
        "model": result.model,
        "route": result.route,
        "tier": result.tier,
        "finish_reason": FINISH_REASON_NAMES[result.finish_reason],
        "usage": _usage(result.usage),
    }


def session_run_json(run: orchestrator_pb2.SessionRun) -> dict[str, Any]:
    return {
        "session_code": run.session_code,
        "llm_result": run.llm_result,
        "messages": [{"role": ROLE_NAMES[m.role], "content": m.content} for m in run.messages],
        "cached": run.cached,
        "model": run.model,
        "usage": _usage(run.usage),
        "created_at": _time(run.created_at),
    }


def _loads(text: str) -> Any:
    return json.loads(text) if text else None


def job_json(job: store_pb2.Job, webhook: store_pb2.Job | None = None) -> dict[str, Any]:
    """A job's status; `webhook` is the job delivering its completion webhook, when it has one."""
    data: dict[str, Any] = {
        "job_id": job.id,
        "kind": job.kind,
        "status": JOB_STATUS_NAMES[job.status],
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "result": _loads(job.result_json) if job.HasField("result_json") else None,
        "error": {"code": job.error.code, "message": job.error.message} if job.HasField("error") else None,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at, job.HasField("started_at")),
        "completed_at": _time(job.completed_at, job.HasField("completed_at")),
    }
    if job.webhook_url:
        data["webhook"] = {
            "url": job.webhook_url,
            "status": JOB_STATUS_NAMES[webhook.status] if webhook else "PENDING",
            "attempts": webhook.attempts if webhook else 0,
            "error": webhook_error(webhook),
        }
    return data


def webhook_error(webhook: store_pb2.Job | None) -> str | None:
    return webhook.error.message if webhook is not None and webhook.HasField("error") else None


def pipeline_run_json(view: orchestrator_pb2.PipelineRunView) -> dict[str, Any]:
    """A pipeline run with every step: PENDING until the run reaches it, then its job's status."""
    run = view.run
    jobs = {job.step_index: job for job in run.steps}
    steps = []
    for index, name in enumerate(view.step_names):
        job = jobs.get(index)
        result = _loads(job.result_json) if job is not None and job.HasField("result_json") else None
        steps.append(
            {
                "name": name,
                "status": JOB_STATUS_NAMES[job.status] if job is not None else "PENDING",
                "job_id": job.id if job is not None else None,
                "attempts": job.attempts if job is not None else 0,
                "output": result["text"] if result else None,
                "error": {"code": job.error.code, "message": job.error.message}
                if job is not None and job.HasField("error")
                else None,
            }
        )
    status = PIPELINE_RUN_STATUS_NAMES[run.status]
    return {
        "run_id": run.id,
        "pipeline": run.pipeline,
        "status": status,
        "stalled": view.stalled,
        "input": _loads(run.input_json) or {},
        "current_step": view.step_names[run.current_step]
        if run.current_step < len(view.step_names)
        else None,
        "steps": steps,
        "output": steps[-1]["output"] if status == "SUCCEEDED" else None,
        "created_at": _time(run.created_at),
        "updated_at": _time(run.updated_at),
        "completed_at": _time(run.completed_at, run.HasField("completed_at")),
    }

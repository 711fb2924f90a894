"""The protos' enum values by the names the REST API and the database use.

Derived from the proto descriptors, so a value added to a .proto reaches every service at once.
"""

from __future__ import annotations

from typing import Any, cast

from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2


def _names(enum: Any, prefix: str, lower: bool) -> dict[int, str]:
    names = {}
    for name, value in enum.items():
        if value:  # X_UNSPECIFIED = 0 has no name on the outside
            short = name.removeprefix(prefix)
            names[value] = short.lower() if lower else short
    return names


def _invert(names: dict[int, str]) -> dict[str, int]:
    return {name: value for value, name in names.items()}


# "system", "user", "assistant"
ROLE_NAMES = _names(common_pb2.Role, "ROLE_", lower=True)
ROLE_VALUES = cast(dict[str, common_pb2.Role], _invert(ROLE_NAMES))
# "stop", "length"
FINISH_REASON_NAMES = _names(common_pb2.FinishReason, "FINISH_REASON_", lower=True)
FINISH_REASON_VALUES = cast(dict[str, common_pb2.FinishReason], _invert(FINISH_REASON_NAMES))
# "DRAFT", "PUBLISHED", "ARCHIVED" (stored as such in template_versions.status)
VERSION_STATUS_NAMES = _names(store_pb2.VersionStatus, "VERSION_STATUS_", lower=False)
VERSION_STATUS_VALUES = cast(dict[str, store_pb2.VersionStatus], _invert(VERSION_STATUS_NAMES))
# "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED" (stored as such in jobs.status)
JOB_STATUS_NAMES = _names(common_pb2.JobStatus, "JOB_STATUS_", lower=False)
JOB_STATUS_VALUES = cast(dict[str, common_pb2.JobStatus], _invert(JOB_STATUS_NAMES))
# "generate", "session", "pipeline_step", "webhook", "ingest", "batch_line" (stored as such in jobs.kind)
JOB_KIND_NAMES = _names(common_pb2.JobKind, "JOB_KIND_", lower=True)
JOB_KIND_VALUES = cast(dict[str, common_pb2.JobKind], _invert(JOB_KIND_NAMES))
# "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED" (stored as such in pipeline_runs.status)
PIPELINE_RUN_STATUS_NAMES = _names(common_pb2.PipelineRunStatus, "PIPELINE_RUN_STATUS_", lower=False)
PIPELINE_RUN_STATUS_VALUES = cast(dict[str, common_pb2.PipelineRunStatus], _invert(PIPELINE_RUN_STATUS_NAMES))
# "in_progress", "completed", "incomplete", "failed", "cancelled" (stored as such in stored_responses.status)
RESPONSE_STATUS_NAMES = _names(common_pb2.ResponseStatus, "RESPONSE_STATUS_", lower=True)
RESPONSE_STATUS_VALUES = cast(dict[str, common_pb2.ResponseStatus], _invert(RESPONSE_STATUS_NAMES))

"""Schemas of OpenAI's Batch API (/v1/batches): the create request, the batch object and its list,
and a line of a batch's input file; each answer built from the store's batch in one place.

OpenAI's schema types a batch's optional fields (output_file_id, the timestamps, errors) as present
or absent, never null: the routes leave unset ones out (response_model_exclude_none)."""

from __future__ import annotations

from typing import Any, Literal

from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, ConfigDict, Field, field_validator

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
ENDPOINTS: tuple[str, ...] = Endpoint.__args__  # type: ignore[attr-defined]
BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
# OpenAI's limits on metadata: 16 pairs, keys of 64 characters, values of 512.
MAX_METADATA = 16


class CreateBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Endpoint
    completion_window: Literal["24h"] = Field(description="Only 24h, as OpenAI's")
    metadata: dict[str, str] | None = None
    # Accepted as OpenAI's SDK may send it; batch output files do not expire here.
    output_expires_after: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (
            len(value) > MAX_METADATA or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
        ):
            raise ValueError("metadata holds at most 16 pairs, keys of 64 characters and values of 512")
        return value


class InputLine(BaseModel):
    """One line of a batch's input file (OpenAI's request input object)."""

    model_config = ConfigDict(extra="forbid")

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: Endpoint
    body: dict[str, Any]


class BatchErrorItem(BaseModel):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchErrorItem]


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


def _moment(batch: store_pb2.Batch, name: str) -> int | None:
    return int(getattr(batch, name).seconds) if batch.HasField(name) else None


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts
    metadata: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_proto(cls, batch: store_pb2.Batch) -> BatchObject:
        errors = [
            BatchErrorItem(code=e.code, message=e.message, param=e.param or None, line=e.line or None)
            for e in batch.errors
        ]
        counts = batch.request_counts
        return cls(
            id=batch.id,
            endpoint=batch.endpoint,
            errors=BatchErrors(data=errors) if errors else None,
            input_file_id=batch.input_file_id,
            completion_window=batch.completion_window,
            status=batch.status,
            output_file_id=batch.output_file_id or None,
            error_file_id=batch.error_file_id or None,
            created_at=int(batch.created_at.seconds),
            request_counts=RequestCounts(
                total=counts.total, completed=counts.completed, failed=counts.failed
            ),
            metadata=dict(batch.metadata),
            **{
                name: _moment(batch, name)
                for name in (
                    "in_progress_at",
                    "expires_at",
                    "finalizing_at",
                    "completed_at",
                    "failed_at",
                    "expired_at",
                    "cancelling_at",
                    "cancelled_at",
                )
            },
        )


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool

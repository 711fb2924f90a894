"""Transport for OpenAI's Batch API under /v1/batches: creating one reads its input file from the
store, translates every line (services/gateway/batches/translation.py) and queues them through the
orchestrator; reads and cancels go to the store, where each batch lives in the caller's project."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import shown
from services.gateway.batches.protocol import BatchList, BatchObject, CreateBatchBody
from services.gateway.batches.translation import read_lines, translate
from services.gateway.calls import orchestrator, store
from services.gateway.errors import InvalidBatchFile, error_responses

router = APIRouter(prefix="/v1/batches", tags=["batches"])

_ERRORS = error_responses(
    descriptions={
        400: "A malformed request, an input file not uploaded for purpose batch, or completion_window not 24h",
        401: "Missing or invalid API key",
        404: "No batch (or input file) of the caller's project has this id",
    }
)


async def _batch(request: Request, batch_id: str) -> BatchObject:
    answer = await store(request).get_batch(store_pb2.GetBatchRequest(batch_id=batch_id))
    return BatchObject.from_proto(answer.batch)


@router.post(
    "",
    response_model=BatchObject,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Create a batch (OpenAI Batch API)",
)
async def create_batch(body: CreateBatchBody, request: Request) -> BatchObject:
    """Queue every request of the input file (uploaded with purpose `batch`) as a job at batch
    priority. A file whose lines cannot run as they stand (not JSON, a duplicate custom_id, a url
    other than `endpoint`) makes a failed batch whose `errors` name the lines; a line whose body its
    endpoint refuses, or whose model is unknown, is answered in the error file and the rest run."""
    content = await store(request).get_file_content(
        store_pb2.GetFileContentRequest(file_id=body.input_file_id)
    )
    if content.file.purpose != "batch":
        raise InvalidBatchFile(
            f"file {shown(body.input_file_id)} was uploaded for purpose {content.file.purpose!r}; "
            "a batch's input needs purpose 'batch'"
        )
    lines, problems = read_lines(content.content)
    translated, mismatched = translate(body.endpoint, lines)
    problems += mismatched
    created = await orchestrator(request).create_batch(
        orchestrator_pb2.CreateBatchRequest(
            endpoint=body.endpoint,
            input_file_id=body.input_file_id,
            completion_window=body.completion_window,
            metadata=body.metadata or {},
            lines=[] if problems else translated,
            problems=[problem.to_proto() for problem in problems],
        )
    )
    return await _batch(request, created.batch_id)


@router.get(
    "",
    response_model=BatchList,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="List batches (OpenAI Batch API)",
)
async def list_batches(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> BatchList:
    """The project's batches, newest first; pass a page's `last_id` as `after` for the next."""
    answer = await store(request).list_batches(store_pb2.ListBatchesRequest(limit=limit, after=after or ""))
    data = [BatchObject.from_proto(batch) for batch in answer.batches]
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=answer.has_more,
    )


@router.get(
    "/{batch_id}",
    response_model=BatchObject,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Retrieve a batch (OpenAI Batch API)",
)
async def retrieve_batch(batch_id: str, request: Request) -> BatchObject:
    return await _batch(request, batch_id)


@router.post(
    "/{batch_id}/cancel",
    response_model=BatchObject,
    response_model_exclude_none=True,
    responses=error_responses(401, 404, 409),
    summary="Cancel a batch (OpenAI Batch API)",
)
async def cancel_batch(batch_id: str, request: Request) -> BatchObject:
    """No new line starts; running ones finish (the batch is `cancelling`), then it is `cancelled`.
    What was answered stays in the output file; the lines that never ran are in the error file."""
    answer = await store(request).cancel_batch(store_pb2.CancelBatchRequest(batch_id=batch_id))
    return BatchObject.from_proto(answer.batch)

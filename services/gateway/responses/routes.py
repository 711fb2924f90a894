"""Transport for the Responses API under /v1/responses: create (JSON, or SSE events when streamed)
through the orchestrator's generation RPCs, which continue and store responses; retrieve, delete and
list input items from the store."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, store, stream_timeout_s, while_connected
from services.gateway.errors import error_responses
from services.gateway.responses.protocol import (
    CreateResponseRequest,
    DeletedResponse,
    InputItemList,
    ResponseObject,
)
from services.gateway.responses.translation import (
    Fresh,
    StreamEvents,
    generation_spec,
    input_item,
    stored_object,
)
from services.gateway.streaming import sse_from_stream

router = APIRouter(prefix="/v1/responses", tags=["responses"])

_CREATE_ERRORS = error_responses(
    descriptions={
        400: "A malformed request, an unsupported field (hosted tools, ...), an unknown previous_response_id, "
        "tools or a text.format the model cannot honour, or an input over the model's limit",
        401: "Missing or invalid API key",
        404: "Unknown model or route",
        429: "The API key is over its rate limit (see Retry-After)",
        502: "The model provider failed",
        503: "The gateway is at its concurrency limit, or the mesh is unavailable",
    }
)
_STORED_ERRORS = error_responses(
    descriptions={
        404: "No stored response of the caller's project has this id",
        401: "Missing or invalid API key",
    }
)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "The response, or SSE events when stream=true"}
}


@router.post(
    "",
    response_model=ResponseObject,
    dependencies=[Depends(generation_slot)],
    responses={**_CREATE_ERRORS, **_STREAMED},
    summary="Create a response (OpenAI Responses API)",
)
async def create_response(body: CreateResponseRequest, request: Request) -> Any:
    """A model response to `input` (text, or items: user/assistant/system/developer messages,
    function calls and their outputs) after `instructions`: text (or JSON of `text.format`) and the
    function tools the model called. Stored unless `store` is false; `previous_response_id`
    continues a stored one (its chain's input and output, calls included, go first)."""
    spec = generation_spec(body)
    if body.stream:
        events = StreamEvents(request, body)
        stream = orchestrator(request).stream_generation(
            orchestrator_pb2.StreamGenerationRequest(spec=spec), stream_timeout_s(request)
        )
        return await sse_from_stream(request, stream, events.render, events.render_error, sep="\n")
    answer = await while_connected(
        request, orchestrator(request).run_generation(orchestrator_pb2.RunGenerationRequest(spec=spec))
    )
    charge(request, answer.result.usage)
    return Fresh(body, answer.response).finished(answer.result)


@router.get(
    "/{response_id}",
    response_model=ResponseObject,
    responses=_STORED_ERRORS,
    summary="Retrieve a stored response (OpenAI Responses API)",
)
async def get_response(response_id: str, request: Request) -> ResponseObject:
    answer = await store(request).get_stored_response(
        store_pb2.GetStoredResponseRequest(response_id=response_id)
    )
    return stored_object(answer.response)


@router.delete(
    "/{response_id}",
    response_model=DeletedResponse,
    responses=_STORED_ERRORS,
    summary="Delete a stored response (OpenAI Responses API)",
)
async def delete_response(response_id: str, request: Request) -> DeletedResponse:
    """Forget a stored response and its input; responses that continued it keep their own."""
    await store(request).delete_stored_response(
        store_pb2.DeleteStoredResponseRequest(response_id=response_id)
    )
    return DeletedResponse(id=response_id)


@router.get(
    "/{response_id}/input_items",
    response_model=InputItemList,
    responses=_STORED_ERRORS,
    summary="List a stored response's input items (OpenAI Responses API)",
)
async def list_input_items(
    response_id: str,
    request: Request,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query(default="desc", description="desc: newest first, as OpenAI"),
    after: str | None = Query(default=None, description="List the items after this item id"),
) -> InputItemList:
    """The response's own input (not that of the responses it continued), one page at a time."""
    answer = await store(request).list_response_input_items(
        store_pb2.ListResponseInputItemsRequest(
            response_id=response_id, limit=limit, ascending=order == "asc", after=after or ""
        )
    )
    data = [input_item(item) for item in answer.items]
    return InputItemList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=answer.has_more,
    )

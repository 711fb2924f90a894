"""Transport for the generate endpoint: HTTP and SSE in, orchestrator calls out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from llmmesh.orchestrator.v1 import orchestrator_pb2
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common import results
from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, sampling_params, stream_timeout_s, while_connected
from services.gateway.errors import error_responses, request_id_of
from services.gateway.generate.protocol import GenerateRequest, GenerateResponse, StreamDelta, StreamDone
from services.gateway.jobs.submission import ACCEPTED, accepted, job_options
from services.gateway.streaming import sse_from_stream

router = APIRouter(prefix="/ai", tags=["generate"])

_ERRORS = error_responses(
    descriptions={
        400: "Malformed JSON, or a request the model cannot take (prompt longer than its context)",
        404: "Unknown model or route",
        409: "The Idempotency-Key was used before for a different request",
        422: "A field is missing, of the wrong type or out of bounds",
        429: "The model's queue is full",
        502: "The model provider failed (after retries and fallbacks)",
        503: "A service of the mesh, or every tier of the route, is unavailable",
        504: "The generation (or a provider call) did not finish within its deadline",
    }
)


def _spec(body: GenerateRequest) -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(
        model=body.model or "",
        system=body.system or "",
        prompt=body.prompt,
        params=sampling_params(body, body.max_tokens, body.stop),
    )


@router.post(
    "/generate",
    response_model=GenerateResponse,
    dependencies=[Depends(generation_slot)],
    responses={
        **_ERRORS,
        **ACCEPTED,
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream=true"},
    },
    summary="Generate text from a prompt",
)
async def generate(body: GenerateRequest, request: Request) -> Any:
    """Generate text. With `stream: true` the response is `text/event-stream`: one `delta` event per
    piece of text as the model produces it, then a `done` event with usage and finish reason (or an
    `error` event if the generation fails midway). With `async: true` the generation is queued as a
    durable job: 202 with its `status_url` (an `Idempotency-Key` header makes resubmission safe)."""
    request_id = request_id_of(request)
    if body.stream:
        return await _stream(request, body, request_id)
    if body.run_async:
        submitted = await orchestrator(request).submit_generation(
            orchestrator_pb2.SubmitGenerationRequest(spec=_spec(body), options=job_options(request, body))
        )
        return accepted(request, submitted.job)
    response = await while_connected(
        request, orchestrator(request).run_generation(orchestrator_pb2.RunGenerationRequest(spec=_spec(body)))
    )
    charge(request, response.result.usage)
    generation = results.Generation.from_proto(response.result)
    return GenerateResponse(**generation.model_dump(), request_id=request_id)


async def _stream(request: Request, body: GenerateRequest, request_id: str) -> EventSourceResponse:
    stream = orchestrator(request).stream_generation(
        orchestrator_pb2.StreamGenerationRequest(spec=_spec(body)), stream_timeout_s(request)
    )

    def render(event: orchestrator_pb2.StreamGenerationResponse) -> list[ServerSentEvent]:
        if event.HasField("delta"):
            return [ServerSentEvent(StreamDelta(text=event.delta.text).model_dump_json(), event="delta")]
        charge(request, event.result.usage)
        done = StreamDone.of(results.Generation.from_proto(event.result), request_id)
        return [ServerSentEvent(done.model_dump_json(), event="done")]

    return await sse_from_stream(request, stream, render)

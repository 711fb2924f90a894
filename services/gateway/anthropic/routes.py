"""Transport for the Anthropic Messages API: Anthropic's request and response shapes in, the same
orchestrator calls as every other front door out. Streams are Anthropic's SSE events, in its order:
message_start, then each content block (content_block_start, a ping after the first, its deltas:
text_delta or a tool call's input_json_delta, content_block_stop), message_delta (stop reason and
usage), message_stop; a failure midway is one `error` event."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from sse_starlette import ServerSentEvent

from services.common.errors import MeshError
from services.gateway.anthropic.protocol import (
    AnthropicCountTokensRequest,
    AnthropicMessage,
    AnthropicMessagesRequest,
    AnthropicMessageUsage,
    AnthropicOutputText,
    AnthropicOutputToolUse,
    AnthropicTokenCount,
    StopReason,
)
from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, stream_timeout_s, while_connected
from services.gateway.errors import anthropic_error_body, error_responses, http_status_of, request_id_of
from services.gateway.openai.protocol import arguments_object
from services.gateway.streaming import sse_from_stream

router = APIRouter(prefix="/v1", tags=["anthropic"])

_ERRORS = error_responses(
    descriptions={
        400: "A malformed request, an unsupported field or content block, or a prompt over the model's limit",
        401: "Missing or invalid API key (x-api-key or Authorization: Bearer)",
        404: "Unknown model or route",
        429: "The API key is over its rate limit (see Retry-After)",
        502: "The model provider failed",
        503: "The gateway is at its concurrency limit, or the mesh is unavailable",
    }
)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "JSON, or Anthropic's SSE events when stream=true",
    }
}


def _spec(body: AnthropicCountTokensRequest | AnthropicMessagesRequest) -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(
        model=body.model, system=body.system_text(), messages=body.turns(), tooling=body.tooling()
    )


def stop_reason(result: common_pb2.GenerationResult) -> tuple[StopReason, str | None]:
    """Anthropic's stop_reason and stop_sequence for how the generation ended."""
    if result.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS:
        return "tool_use", None
    if result.finish_reason == common_pb2.FINISH_REASON_LENGTH:
        return "max_tokens", None
    if result.finish_reason == common_pb2.FINISH_REASON_CONTENT_FILTER:
        return "refusal", None
    if result.stop_sequence:
        return "stop_sequence", result.stop_sequence
    return "end_turn", None


class _Events:
    """The SSE events of one streamed message, in Anthropic's order."""

    def __init__(self, request: Request, body: AnthropicMessagesRequest) -> None:
        self.request = request
        self.id = f"msg_{request_id_of(request)}"
        self.model = body.model
        self.started = False
        # The content block being streamed (text, or a tool call by the mesh's call index), and its index.
        self.block: str | int | None = None
        self.index = -1

    @staticmethod
    def event(data: dict[str, Any]) -> ServerSentEvent:
        return ServerSentEvent(json.dumps(data, separators=(",", ":")), event=data["type"], sep="\n")

    def opening(self) -> list[ServerSentEvent]:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            # The prompt's tokens are known when the generation ends: message_delta carries them.
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [self.event({"type": "message_start", "message": message})]

    def begin(self, block: str | int, content_block: dict[str, Any]) -> list[ServerSentEvent]:
        """Close the block being streamed, open the next (the first with a ping after it, as Anthropic's)."""
        frames = self.end()
        self.block, self.index = block, self.index + 1
        frames.append(
            self.event({"type": "content_block_start", "index": self.index, "content_block": content_block})
        )
        if self.index == 0:
            frames.append(self.event({"type": "ping"}))
        return frames

    def end(self) -> list[ServerSentEvent]:
        if self.block is None:
            return []
        self.block = None
        return [self.event({"type": "content_block_stop", "index": self.index})]

    def render(self, event: orchestrator_pb2.StreamGenerationResponse) -> list[ServerSentEvent]:
        frames = [] if self.started else self.opening()
        self.started = True
        if event.HasField("delta"):
            if self.block != "text":
                frames += self.begin("text", {"type": "text", "text": ""})
            if event.delta.text:
                delta = {"type": "text_delta", "text": event.delta.text}
                frames.append(
                    self.event({"type": "content_block_delta", "index": self.index, "delta": delta})
                )
            return frames
        if event.HasField("tool_call"):
            piece = event.tool_call
            if self.block != piece.index:
                use = {"type": "tool_use", "id": piece.id, "name": piece.name, "input": {}}
                frames += self.begin(piece.index, use)
            if piece.arguments:
                delta = {"type": "input_json_delta", "partial_json": piece.arguments}
                frames.append(
                    self.event({"type": "content_block_delta", "index": self.index, "delta": delta})
                )
            return frames
        result = event.result
        charge(self.request, result.usage)
        reason, sequence = stop_reason(result)
        usage = {"input_tokens": result.usage.prompt_tokens, "output_tokens": result.usage.completion_tokens}
        if self.index < 0:  # nothing was generated: still one (empty) text block, as Anthropic sends
            frames += self.begin("text", {"type": "text", "text": ""})
        return [
            *frames,
            *self.end(),
            self.event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage,
                }
            ),
            self.event({"type": "message_stop"}),
        ]

    def render_error(self, error: MeshError, request_id: str) -> list[ServerSentEvent]:
        return [
            self.event(anthropic_error_body(http_status_of(error), error.code, error.message, request_id))
        ]


@router.post(
    "/messages",
    response_model=AnthropicMessage,
    dependencies=[Depends(generation_slot)],
    responses={**_ERRORS, **_STREAMED},
    summary="Create a message (Anthropic-compatible)",
)
async def create_message(body: AnthropicMessagesRequest, request: Request) -> Any:
    """Anthropic's Messages API: text and client tools. `model` is a model or route name of the mesh; the
    `x-api-key` header carries the mesh's API key and `anthropic-version` is accepted."""
    spec = _spec(body)
    spec.params.CopyFrom(body.sampling())
    if body.stream:
        events = _Events(request, body)
        stream = orchestrator(request).stream_generation(
            orchestrator_pb2.StreamGenerationRequest(spec=spec), stream_timeout_s(request)
        )
        return await sse_from_stream(request, stream, events.render, events.render_error, sep="\n")
    response = await while_connected(
        request, orchestrator(request).run_generation(orchestrator_pb2.RunGenerationRequest(spec=spec))
    )
    result = response.result
    charge(request, result.usage)
    reason, sequence = stop_reason(result)
    uses = [
        AnthropicOutputToolUse(id=c.id, name=c.name, input=arguments_object(c)) for c in result.tool_calls
    ]
    return AnthropicMessage(
        id=f"msg_{request_id_of(request)}",
        content=[*([AnthropicOutputText(text=result.text)] if result.text or not uses else []), *uses],
        model=body.model,
        stop_reason=reason,
        stop_sequence=sequence,
        usage=AnthropicMessageUsage(
            input_tokens=result.usage.prompt_tokens, output_tokens=result.usage.completion_tokens
        ),
    )


@router.post(
    "/messages/count_tokens",
    response_model=AnthropicTokenCount,
    responses=_ERRORS,
    summary="Count a message's input tokens (Anthropic-compatible)",
)
async def count_tokens(body: AnthropicCountTokensRequest, request: Request) -> AnthropicTokenCount:
    """The input tokens the message would be to the model that serves it first (a route's first
    model tier): its own tokenizer and turn template, the system prompt included; nothing is generated."""
    answer = await orchestrator(request).count_tokens(orchestrator_pb2.CountTokensRequest(spec=_spec(body)))
    return AnthropicTokenCount(input_tokens=answer.prompt_tokens)

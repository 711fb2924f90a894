"""Transport for the OpenAI-compatible API: OpenAI's request and response shapes in, orchestrator
calls out. Streams are OpenAI's SSE framing: `data: {chunk}` frames, then `data: [DONE]`."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Sequence
from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from pydantic import TypeAdapter, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.common.enums import FINISH_REASON_NAMES
from services.common.errors import MeshError, ModelNotFound, shown
from services.common.results import FinishReason, Usage
from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, sampling_params, stream_timeout_s, while_connected
from services.gateway.errors import (
    InvalidConversationId,
    error_responses,
    http_status_of,
    openai_error_body,
    request_id_of,
)
from services.gateway.knowledge.protocol import Hit
from services.gateway.openai.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    ConversationId,
    EmbeddingData,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    FunctionCall,
    Model,
    ModelList,
    ToolCall,
)
from services.gateway.streaming import sse_from_stream

router = APIRouter(prefix="/v1", tags=["openai"])

CONVERSATION_HEADER = "X-Conversation-ID"
_CONVERSATION_ID = TypeAdapter(ConversationId)
_ERRORS = error_responses(
    descriptions={
        400: "A malformed request, an unsupported field, or a prompt over the model's limit",
        401: "Missing or invalid API key",
        404: "Unknown model or route",
        429: "The API key is over its rate limit (see Retry-After)",
        502: "The model provider failed",
        503: "The gateway is at its concurrency limit, or the mesh is unavailable",
    }
)


def _finish_reason(result: common_pb2.GenerationResult) -> FinishReason:
    return cast(FinishReason, FINISH_REASON_NAMES.get(result.finish_reason, "stop"))


def _assistant_message(result: common_pb2.GenerationResult) -> AssistantMessage:
    calls = [
        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in result.tool_calls
    ]
    # A turn that only called tools has no content (null, as OpenAI's).
    return AssistantMessage(content=result.text or (None if calls else ""), tool_calls=calls or None)


def _conversation_id(body: ChatCompletionRequest, request: Request) -> str:
    header = request.headers.get(CONVERSATION_HEADER)
    if body.conversation_id is not None or header is None:
        return body.conversation_id or ""
    try:
        return _CONVERSATION_ID.validate_python(header)
    except ValidationError as exc:
        raise InvalidConversationId(
            f"{CONVERSATION_HEADER} must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
        ) from exc


def _chat_spec(body: ChatCompletionRequest, request: Request) -> orchestrator_pb2.GenerationSpec:
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model,
        messages=[m.to_proto() for m in body.messages],
        params=sampling_params(body, body.token_limit(), body.stops()),
        conversation_id=_conversation_id(body, request),
        tooling=body.tooling(),
        constraint=body.constraint(),
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    if body.knowledge_bases:
        spec.knowledge.knowledge_base_ids.extend(body.knowledge_bases)
        spec.knowledge.top_k = body.knowledge_top_k
    return spec


class _Chunks:
    """The `data:` frames of one streamed completion, in OpenAI's chunk format."""

    def __init__(self, request: Request, kind: str, body: ChatCompletionRequest | CompletionRequest) -> None:
        self.request = request
        self.request_id = request_id_of(request)
        self.chat = kind == "chat"
        self.object = "chat.completion.chunk" if self.chat else "text_completion"
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{self.request_id}"
        self.model = body.model
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.created = int(time.time())
        self.started = False
        # Characters of completion text sent so far: where the next piece's tokens start.
        self.offset = 0

    def frame(self, data: dict[str, Any]) -> ServerSentEvent:
        return ServerSentEvent(json.dumps(data, separators=(",", ":")), sep="\n")

    def envelope(
        self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None, **extra: Any
    ) -> ServerSentEvent:
        data: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:  # null on every chunk but the last, as OpenAI sends it
            data["usage"] = usage
        return self.frame({**data, **extra})

    def chunk(
        self,
        text: str | None,
        finish_reason: str | None,
        logprobs: Sequence[common_pb2.TokenLogprob] = (),
        **extra: Any,
    ) -> ServerSentEvent:
        choice: dict[str, Any] = {"index": 0}
        if not self.chat:
            choice["text"] = text or ""
        elif not self.started:
            choice["delta"] = {"role": "assistant", "content": text or "", "refusal": None}
        else:
            choice["delta"] = {} if text is None else {"content": text}
        self.started = True
        scores: dict[str, Any] | None = None
        if logprobs:
            scores = (
                ChoiceLogprobs.from_proto(logprobs).model_dump()
                if self.chat
                else CompletionLogprobs.from_proto(logprobs, self.offset).model_dump()
            )
        self.offset += len(text or "")
        return self.envelope([{**choice, "logprobs": scores, "finish_reason": finish_reason}], **extra)

    def tool_call(self, piece: common_pb2.ToolCallDelta) -> ServerSentEvent:
        """OpenAI's tool-call delta: the call's first piece has its id, type and name."""
        function: dict[str, str] = {"arguments": piece.arguments}
        call: dict[str, Any] = {"index": piece.index}
        if piece.id:
            call.update(id=piece.id, type="function")
            function["name"] = piece.name
        call["function"] = function
        delta: dict[str, Any] = {"tool_calls": [call]}
        if not self.started:
            delta = {"role": "assistant", "content": None, "refusal": None, **delta}
        self.started = True
        return self.envelope([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def render(self, event: orchestrator_pb2.StreamGenerationResponse) -> list[ServerSentEvent]:
        if event.HasField("delta"):
            return [self.chunk(event.delta.text, None, event.delta.logprobs)]
        if event.HasField("tool_call"):
            return [self.tool_call(event.tool_call)]
        result = event.result
        charge(self.request, result.usage)
        # A grounded chat's sources arrive with its last chunk, the one with the finish reason.
        sources = (
            {"sources": [Hit.from_proto(h).model_dump() for h in result.sources]} if result.sources else {}
        )
        frames = [self.chunk(None, _finish_reason(result), (), **sources)]
        if self.include_usage:
            frames.append(self.envelope([], Usage.from_proto(result.usage).model_dump()))
        return frames

    def render_error(self, error: MeshError, request_id: str) -> list[ServerSentEvent]:
        return [self.frame(openai_error_body(http_status_of(error), error.code, error.message, request_id))]


async def _stream(
    request: Request, spec: orchestrator_pb2.GenerationSpec, chunks: _Chunks
) -> EventSourceResponse:
    stream = orchestrator(request).stream_generation(
        orchestrator_pb2.StreamGenerationRequest(spec=spec), stream_timeout_s(request)
    )
    return await sse_from_stream(
        request,
        stream,
        chunks.render,
        chunks.render_error,
        closing=[ServerSentEvent("[DONE]", sep="\n")],
        sep="\n",
    )


async def _run(request: Request, spec: orchestrator_pb2.GenerationSpec) -> common_pb2.GenerationResult:
    response = await while_connected(
        request, orchestrator(request).run_generation(orchestrator_pb2.RunGenerationRequest(spec=spec))
    )
    charge(request, response.result.usage)
    return response.result


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks when stream=true"}
}


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    dependencies=[Depends(generation_slot)],
    responses={**_ERRORS, **_STREAMED},
    summary="Create a chat completion (OpenAI-compatible)",
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """OpenAI's chat completions. `model` is a model or route name. With `conversation_id` (or the
    X-Conversation-ID header) the mesh keeps the conversation: send only the new turn each time."""
    spec = _chat_spec(body, request)
    if body.stream:
        return await _stream(request, spec, _Chunks(request, "chat", body))
    result = await _run(request, spec)
    return ChatCompletion(
        id=f"chatcmpl-{request_id_of(request)}",
        created=int(time.time()),
        model=body.model,
        choices=[
            ChatChoice(
                message=_assistant_message(result),
                finish_reason=_finish_reason(result),
                logprobs=ChoiceLogprobs.from_proto(result.logprobs) if body.logprobs else None,
            )
        ],
        usage=Usage.from_proto(result.usage),
        sources=[Hit.from_proto(hit) for hit in result.sources] if body.knowledge_bases else None,
    )


@router.post(
    "/completions",
    response_model=Completion,
    dependencies=[Depends(generation_slot)],
    responses={**_ERRORS, **_STREAMED},
    summary="Create a text completion (OpenAI-compatible)",
)
async def completions(body: CompletionRequest, request: Request) -> Any:
    """OpenAI's (legacy) completions: the prompt goes to the model as is, without a chat template."""
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model,
        prompt=body.text(),
        raw=True,
        params=sampling_params(body, body.max_tokens, body.stops()),
    )
    if body.logprobs is not None:
        spec.logprobs, spec.top_logprobs = True, body.logprobs
    if body.stream:
        return await _stream(request, spec, _Chunks(request, "text", body))
    result = await _run(request, spec)
    scores = CompletionLogprobs.from_proto(result.logprobs) if body.logprobs is not None else None
    return Completion(
        id=f"cmpl-{request_id_of(request)}",
        created=int(time.time()),
        model=body.model,
        choices=[CompletionChoice(text=result.text, finish_reason=_finish_reason(result), logprobs=scores)],
        usage=Usage.from_proto(result.usage),
    )


def _base64(values: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


@router.post(
    "/embeddings",
    response_model=EmbeddingList,
    dependencies=[Depends(generation_slot)],
    responses=_ERRORS,
    summary="Create embeddings (OpenAI-compatible)",
)
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
    answer = await orchestrator(request).create_embeddings(
        orchestrator_pb2.CreateEmbeddingsRequest(model=body.model, inputs=body.texts())
    )
    charge(request, answer.usage)
    encode = _base64 if body.encoding_format == "base64" else list
    return EmbeddingList(
        data=[
            EmbeddingData(index=i, embedding=encode(list(e.values))) for i, e in enumerate(answer.embeddings)
        ],
        model=body.model,
        usage=EmbeddingUsage(
            prompt_tokens=answer.usage.prompt_tokens, total_tokens=answer.usage.total_tokens
        ),
    )


async def _models(request: Request) -> list[Model]:
    answer = await orchestrator(request).describe_routing(orchestrator_pb2.DescribeRoutingRequest())
    models = [Model(id=m.name, owned_by="llm-mesh") for m in answer.models]
    named = {m.id for m in models}
    return models + [
        Model(id=r.name, owned_by="llm-mesh:route") for r in answer.routes if r.name not in named
    ]


@router.get("/models", response_model=ModelList, responses=_ERRORS, summary="List models (OpenAI-compatible)")
async def list_models(request: Request) -> ModelList:
    """Every model and route a request's `model` may name."""
    return ModelList(data=await _models(request))


@router.get(
    "/models/{model}", response_model=Model, responses=_ERRORS, summary="Describe a model (OpenAI-compatible)"
)
async def get_model(model: str, request: Request) -> Model:
    for entry in await _models(request):
        if entry.id == model:
            return entry
    raise ModelNotFound(f"no model or route is named {shown(model)}")

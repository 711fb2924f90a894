"""Between OpenAI's request and response shapes and the orchestrator's messages: the generation a
chat completion, completion or embedding request asks for, and the OpenAI object of its result. The
live routes and the Batch API's lines translate with these same functions."""

from __future__ import annotations

import base64
import struct
from typing import cast

from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.enums import FINISH_REASON_NAMES
from services.common.results import FinishReason, Usage
from services.gateway.calls import sampling_params
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
    EmbeddingData,
    EmbeddingList,
    EmbeddingUsage,
    FunctionCall,
    ToolCall,
)


def finish_reason(result: common_pb2.GenerationResult) -> FinishReason:
    """OpenAI's name of why the generation ended."""
    return cast(FinishReason, FINISH_REASON_NAMES.get(result.finish_reason, "stop"))


def assistant_message(result: common_pb2.GenerationResult) -> AssistantMessage:
    """The assistant turn of a generation's result: its text, or the tools it called."""
    calls = [
        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in result.tool_calls
    ]
    # A turn that only called tools has no content (null, as OpenAI's).
    return AssistantMessage(content=result.text or (None if calls else ""), tool_calls=calls or None)


def chat_spec(body: ChatCompletionRequest, conversation_id: str = "") -> orchestrator_pb2.GenerationSpec:
    """The generation a chat completion request asks for (a live one, or a batch's line)."""
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model,
        messages=[m.to_proto() for m in body.messages],
        params=sampling_params(body, body.token_limit(), body.stops()),
        conversation_id=conversation_id,
        tooling=body.tooling(),
        constraint=body.constraint(),
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    if body.knowledge_bases:
        spec.knowledge.knowledge_base_ids.extend(body.knowledge_bases)
        spec.knowledge.top_k = body.knowledge_top_k
    return spec


def completion_spec(body: CompletionRequest) -> orchestrator_pb2.GenerationSpec:
    """The generation a (legacy) completion request asks for: the prompt as is, without a chat template."""
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model,
        prompt=body.text(),
        raw=True,
        params=sampling_params(body, body.max_tokens, body.stops()),
    )
    if body.logprobs is not None:
        spec.logprobs, spec.top_logprobs = True, body.logprobs
    return spec


def chat_completion(
    result: common_pb2.GenerationResult,
    model: str,
    completion_id: str,
    created: int,
    logprobs: bool = False,
    grounded: bool = False,
) -> ChatCompletion:
    """OpenAI's chat.completion object of a generation's result (`logprobs` and `grounded`: the
    request asked for them)."""
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[
            ChatChoice(
                message=assistant_message(result),
                finish_reason=finish_reason(result),
                logprobs=ChoiceLogprobs.from_proto(result.logprobs) if logprobs else None,
            )
        ],
        usage=Usage.from_proto(result.usage),
        sources=[Hit.from_proto(hit) for hit in result.sources] if grounded else None,
    )


def text_completion(
    result: common_pb2.GenerationResult, model: str, completion_id: str, created: int, logprobs: bool = False
) -> Completion:
    """OpenAI's text_completion object of a generation's result (`logprobs`: the request asked for them)."""
    scores = CompletionLogprobs.from_proto(result.logprobs) if logprobs else None
    return Completion(
        id=completion_id,
        created=created,
        model=model,
        choices=[CompletionChoice(text=result.text, finish_reason=finish_reason(result), logprobs=scores)],
        usage=Usage.from_proto(result.usage),
    )


def embedding_list(
    answer: orchestrator_pb2.CreateEmbeddingsResponse, model: str, encoding_format: str = "float"
) -> EmbeddingList:
    """OpenAI's embedding list of the orchestrator's answer, as floats or base64."""
    encode = base64_vector if encoding_format == "base64" else list
    return EmbeddingList(
        data=[
            EmbeddingData(index=i, embedding=encode(list(e.values))) for i, e in enumerate(answer.embeddings)
        ],
        model=model,
        usage=EmbeddingUsage(
            prompt_tokens=answer.usage.prompt_tokens, total_tokens=answer.usage.total_tokens
        ),
    )


def base64_vector(values: list[float]) -> str:
    """OpenAI's base64 encoding: the vector as little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()

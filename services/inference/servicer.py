"""InferenceService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import cast

import grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from services.common.enums import FINISH_REASON_VALUES, ROLE_NAMES
from services.common.errors import InvalidGenerationRequest
from services.inference.backends.base import (
    Delta,
    Message,
    OutputConstraint,
    Role,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    Tooling,
)
from services.inference.service import InferenceService, grammar_constraint, json_schema_constraint


def _messages(conversation: common_pb2.Conversation) -> list[Message]:
    messages = []
    for message in conversation.messages:
        role = ROLE_NAMES.get(message.role)
        if role is None:
            raise InvalidGenerationRequest("every message needs a role: system, user, assistant or tool")
        calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in message.tool_calls)
        messages.append(Message(cast(Role, role), message.content, calls, message.tool_call_id))
    return messages


_CHOICES: dict[int, ToolChoiceMode] = {
    common_pb2.ToolChoice.MODE_UNSPECIFIED: "auto",
    common_pb2.ToolChoice.MODE_AUTO: "auto",
    common_pb2.ToolChoice.MODE_NONE: "none",
    common_pb2.ToolChoice.MODE_REQUIRED: "required",
    common_pb2.ToolChoice.MODE_FUNCTION: "function",
}


def _choice(mode: int) -> ToolChoiceMode:
    if mode not in _CHOICES:
        raise InvalidGenerationRequest(f"tool_choice mode {mode} is not one this service knows")
    return _CHOICES[mode]


def _tooling(request: inference_pb2.GenerateRequest) -> Tooling | None:
    if not request.HasField("tooling"):
        return None
    tooling = request.tooling
    return Tooling(
        tools=tuple(Tool(t.name, t.description, t.parameters, t.strict) for t in tooling.tools),
        choice=_choice(tooling.choice.mode),
        function=tooling.choice.function,
        parallel_calls=tooling.parallel_calls if tooling.HasField("parallel_calls") else True,
    )


def _tool_call(call: ToolCall) -> common_pb2.ToolCall:
    return common_pb2.ToolCall(id=call.id, name=call.name, arguments=call.arguments)


def _constraint(request: inference_pb2.GenerateRequest) -> OutputConstraint | None:
    constraint = request.constraint
    kind = constraint.WhichOneof("kind") if request.HasField("constraint") else None
    if kind == "json_schema":
        return json_schema_constraint(constraint.json_schema.schema, constraint.json_schema.strict)
    if kind == "json_object":
        return OutputConstraint("json_object")
    if kind == "grammar":
        return grammar_constraint(constraint.grammar)
    return None


def _logprobs(logprobs: tuple[TokenLogprob, ...]) -> list[common_pb2.TokenLogprob]:
    return [
        common_pb2.TokenLogprob(
            token=item.token,
            logprob=item.logprob,
            bytes=item.token_bytes,
            top_logprobs=[
                common_pb2.TopLogprob(token=top.token, logprob=top.logprob, bytes=top.token_bytes)
                for top in item.top
            ],
        )
        for item in logprobs
    ]


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """Generate, ListModels, Embed and CountTokens, on the pool's models."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def Generate(
        self, request: inference_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        params = request.params
        sampling = self.service.sampling(
            max_tokens=params.max_tokens,
            temperature=params.temperature if params.HasField("temperature") else None,
            top_p=params.top_p if params.HasField("top_p") else None,
            seed=params.seed if params.HasField("seed") else None,
            stop=params.stop,
        )
        has_prompt = request.WhichOneof("input") == "prompt"
        generation = self.service.generation_input(
            sampling,
            prompt=request.prompt if has_prompt else None,
            messages=[] if has_prompt else _messages(request.conversation),
            one_shot=request.one_shot,
            tooling=_tooling(request),
            constraint=_constraint(request),
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs,
        )
        async with aclosing(self.service.generate(request.model, generation)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    yield inference_pb2.GenerateResponse(
                        delta=common_pb2.TokenDelta(
                            text=event.text, tokens=event.tokens, logprobs=_logprobs(event.logprobs)
                        )
                    )
                    continue
                if isinstance(event, ToolCallDelta):
                    yield inference_pb2.GenerateResponse(
                        tool_call=common_pb2.ToolCallDelta(
                            index=event.index, id=event.id, name=event.name, arguments=event.arguments
                        )
                    )
                    continue
                yield inference_pb2.GenerateResponse(
                    result=common_pb2.GenerationResult(
                        text=event.text,
                        model=request.model,
                        finish_reason=FINISH_REASON_VALUES[event.finish_reason],
                        stop_sequence=event.stop_sequence,
                        tool_calls=[_tool_call(call) for call in event.tool_calls],
                        usage=common_pb2.Usage(
                            prompt_tokens=event.prompt_tokens,
                            completion_tokens=event.completion_tokens,
                            total_tokens=event.prompt_tokens + event.completion_tokens,
                            cached_tokens=event.cached_tokens,
                        ),
                        logprobs=_logprobs(event.logprobs),
                    )
                )

    async def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ListModelsResponse:
        return inference_pb2.ListModelsResponse(
            models=[
                common_pb2.ModelInfo(
                    name=backend.name,
                    backend=backend.kind,
                    loaded=backend.loaded,
                    context_length=backend.context_length,
                    capabilities=backend.config.capabilities,
                    pool=backend.config.pool,
                    pool_reachable=True,
                    load=self.service.load(backend.name),
                )
                for backend in self.service.host.backends.values()
            ]
        )

    async def Embed(
        self, request: inference_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.EmbedResponse:
        embeddings = await self.service.embed(request.model, list(request.inputs))
        return inference_pb2.EmbedResponse(
            embeddings=[common_pb2.Embedding(values=vector) for vector in embeddings.vectors],
            prompt_tokens=embeddings.prompt_tokens,
            model=request.model,
        )

    async def CountTokens(
        self, request: inference_pb2.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.CountTokensResponse:
        has_prompt = request.WhichOneof("input") == "prompt"
        counted = self.service.generation_input(
            # Counting samples nothing; the input's checks are those of a generation.
            self.service.sampling(max_tokens=0, temperature=None, top_p=None, seed=None, stop=()),
            prompt=request.prompt if has_prompt else None,
            messages=[] if has_prompt else _messages(request.conversation),
        )
        tokens = await self.service.count_tokens(request.model, counted)
        return inference_pb2.CountTokensResponse(prompt_tokens=tokens, model=request.model)

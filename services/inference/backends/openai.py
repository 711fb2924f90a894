"""OpenAI-compatible backend on the official `openai` SDK: OpenAI itself, or any server speaking its
chat completions API (Ollama's /v1, a remote vLLM or llama.cpp server, HF TGI) through `base_url`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from services.common.errors import MeshError
from services.common.registry import OpenAIConfig
from services.inference.backends.base import (
    Delta,
    Embeddings,
    Event,
    Finished,
    FinishReason,
    GenerationInput,
    Message,
    OutputConstraint,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Tooling,
    TopLogprob,
)
from services.inference.backends.cloud import CloudBackend, ToolCalls, calls_made, finish_reason
from services.inference.backends.provider_errors import classify
from services.inference.config import InferenceSettings


class OpenAIBackend(CloudBackend[openai.AsyncOpenAI]):
    kind = "openai"
    provider = "openai"
    # OpenAI's API and the compatible servers (vLLM, llama.cpp's, Ollama's) give per-token logprobs.
    reports_logprobs = True

    def __init__(self, name: str, config: OpenAIConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)

    def _connect(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self.api_key or "not-needed",
            base_url=self.config.base_url,
            timeout=self.config.timeout_s,
            max_retries=0,
        )

    async def _disconnect(self, client: openai.AsyncOpenAI) -> None:
        await client.close()

    def _error(self, exc: Exception) -> MeshError:
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            return classify(
                self.provider,
                self.name,
                exc,
                status=exc.status_code,
                message=f"{exc.message} {body.get('code') or ''}",
                provider_code=str(body.get("code") or ""),
            )
        return classify(self.provider, self.name, exc)

    def _params(self, request: GenerationInput) -> dict[str, Any]:
        sampling = request.sampling
        params: dict[str, Any] = {
            "model": self.config.model_id,
            "messages": [_message(m) for m in request.as_messages()],
            # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
            ("max_completion_tokens" if self.config.base_url is None else "max_tokens"): sampling.max_tokens,
        }
        if sampling.temperature is not None:
            params["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            params["top_p"] = sampling.top_p
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        if sampling.stop:
            params["stop"] = list(sampling.stop)
        if request.tooling is not None:
            params.update(_tooling(request.tooling))
        if request.constraint is not None:
            params["response_format"] = _response_format(request.constraint)
        if request.logprobs:
            params["logprobs"] = True
            if request.top_logprobs:
                params["top_logprobs"] = request.top_logprobs
        return params

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        params = self._params(request)
        if request.one_shot:
            try:
                completion = await self.client.chat.completions.create(**params)
            except openai.OpenAIError as exc:
                raise self._error(exc) from exc
            choice = completion.choices[0] if completion.choices else None
            text = (choice.message.content if choice else None) or ""
            made = tuple(
                ToolCall(call.id, call.function.name, call.function.arguments or "{}")
                for call in (choice.message.tool_calls or [] if choice else [])
                if call.type == "function"
            )
            usage = completion.usage
            scores = _logprobs(choice.logprobs if choice else None)
            if text:
                yield Delta(text, usage.completion_tokens if usage else 0, scores)
            for index, call in enumerate(made):
                yield ToolCallDelta(index, call.id, call.name, call.arguments)
            yield Finished(
                text,
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                calls_made(_finish(choice.finish_reason if choice else None), made),
                logprobs=scores,
                tool_calls=made,
            )
            return

        parts: list[str] = []
        scored: list[TokenLogprob] = []
        calls = ToolCalls()
        reason: str | None = None
        prompt_tokens = completion_tokens = 0
        try:
            stream = await self.client.chat.completions.create(
                **params, stream=True, stream_options={"include_usage": True}
            )
            async with stream:  # leaving early closes the HTTP response, which stops the provider
                async for chunk in stream:
                    if chunk.usage:
                        prompt_tokens, completion_tokens = (
                            chunk.usage.prompt_tokens,
                            chunk.usage.completion_tokens,
                        )
                    for choice in chunk.choices:
                        if choice.delta.content:
                            parts.append(choice.delta.content)
                            pieces = _logprobs(choice.logprobs)
                            scored += pieces
                            yield Delta(choice.delta.content, 0, pieces)
                        for piece in choice.delta.tool_calls or []:
                            function = piece.function
                            yield calls.add(
                                ToolCallDelta(
                                    piece.index,
                                    piece.id or "",
                                    (function.name if function else None) or "",
                                    (function.arguments if function else None) or "",
                                )
                            )
                        reason = choice.finish_reason or reason
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        yield Finished(
            "".join(parts),
            prompt_tokens,
            completion_tokens,
            calls_made(_finish(reason), calls),
            logprobs=tuple(scored),
            tool_calls=calls.done(),
        )

    async def embed(self, inputs: list[str]) -> Embeddings:
        try:
            response = await self.client.embeddings.create(model=self.config.model_id, input=inputs)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        ordered = sorted(response.data, key=lambda item: item.index)
        return Embeddings(
            vectors=[list(item.embedding) for item in ordered],
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
        )


def _logprobs(scores: Any) -> tuple[TokenLogprob, ...]:
    """A choice's (or a chunk's) per-token logprobs, as the API gives them (`logprobs.content`)."""
    if scores is None or not scores.content:
        return ()
    return tuple(
        TokenLogprob(
            token.token,
            token.logprob,
            bytes(token.bytes or token.token.encode()),
            tuple(
                TopLogprob(top.token, top.logprob, bytes(top.bytes or top.token.encode()))
                for top in token.top_logprobs or []
            ),
        )
        for token in scores.content
    )


def _finish(reason: str | None) -> FinishReason:
    return finish_reason(reason, ("length",), ("content_filter",))


def _message(message: Message) -> dict[str, Any]:
    """A turn in OpenAI's chat format: tool turns answer a call id; assistant turns may carry calls."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["content"] = message.content or None
        turn["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return turn


def _tooling(tooling: Tooling) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if tooling.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.schema(),
                    **({"strict": True} if tool.strict else {}),
                },
            }
            for tool in tooling.tools
        ]
        if not tooling.parallel_calls:
            params["parallel_tool_calls"] = False
    params["tool_choice"] = (
        {"type": "function", "function": {"name": tooling.function}}
        if tooling.choice == "function"
        else tooling.choice
    )
    if not tooling.tools:
        del params["tool_choice"]  # OpenAI refuses a tool_choice without tools
    return params


def _response_format(constraint: OutputConstraint) -> dict[str, Any]:
    if constraint.kind == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": constraint.json_schema, "strict": constraint.strict},
    }

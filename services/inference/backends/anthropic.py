"""Anthropic backend on the official `anthropic` SDK (the Messages API)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anthropic

from services.common.errors import MeshError
from services.common.registry import AnthropicConfig
from services.inference.backends.base import (
    Delta,
    Event,
    Finished,
    FinishReason,
    GenerationInput,
    Message,
    ToolCall,
    ToolCallDelta,
    Tooling,
)
from services.inference.backends.cloud import (
    CloudBackend,
    OutputTool,
    ToolCalls,
    add_tool_result,
    finish_reason,
)
from services.inference.backends.provider_errors import classify
from services.inference.config import InferenceSettings

_LENGTH = ("max_tokens", "model_context_window_exceeded")
_FILTERED = ("refusal",)


class AnthropicBackend(CloudBackend[anthropic.AsyncAnthropic]):
    """Claude through the Messages API. This SDK's Messages API takes no temperature, top_p or seed:
    those fields of a request are not sent (the model's own sampling applies)."""

    kind = "anthropic"
    provider = "anthropic"

    def __init__(self, name: str, config: AnthropicConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)

    def _connect(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self.api_key, base_url=self.config.base_url, timeout=self.config.timeout_s, max_retries=0
        )

    async def _disconnect(self, client: anthropic.AsyncAnthropic) -> None:
        await client.close()

    def _error(self, exc: Exception) -> MeshError:
        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
            return classify(
                self.provider,
                self.name,
                exc,
                status=exc.status_code,
                message=str(error.get("message") or exc.message),
                provider_code=str(error.get("type") or ""),
            )
        return classify(self.provider, self.name, exc)

    def _params(self, request: GenerationInput, tooling: Tooling | None) -> dict[str, Any]:
        system, messages = self.split_system(request)
        params: dict[str, Any] = {
            "model": self.config.model_id,
            "max_tokens": request.sampling.max_tokens,
            "messages": _turns(messages),
        }
        if system:
            params["system"] = system
        if request.sampling.stop:
            params["stop_sequences"] = list(request.sampling.stop)
        if tooling is not None and tooling.tools:
            params.update(_tooling(tooling))
        return params

    def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        # JSON answers come as a tool call the model must make (the Messages API takes no schema).
        output = OutputTool(request.constraint, request.tooling)
        return output.answers(self._events(self._params(request, output.tooling()), request.one_shot))

    async def _events(self, params: dict[str, Any], one_shot: bool) -> AsyncGenerator[Event, None]:
        if one_shot:
            try:
                message = await self.client.messages.create(**params)
            except anthropic.AnthropicError as exc:
                raise self._error(exc) from exc
            text = "".join(block.text for block in message.content if block.type == "text")
            made = tuple(
                ToolCall(block.id, block.name, json.dumps(block.input, ensure_ascii=False))
                for block in message.content
                if block.type == "tool_use"
            )
            if text:
                yield Delta(text, message.usage.output_tokens)
            for index, call in enumerate(made):
                yield ToolCallDelta(index, call.id, call.name, call.arguments)
            yield Finished(
                text,
                message.usage.input_tokens,
                message.usage.output_tokens,
                _finish(message.stop_reason),
                tool_calls=made,
            )
            return

        parts: list[str] = []
        calls = ToolCalls()
        # Anthropic numbers content blocks (text and tool_use alike); OpenAI's deltas number calls.
        call_index: dict[int, int] = {}
        reason: str | None = None
        input_tokens = output_tokens = 0
        try:
            stream = await self.client.messages.create(**params, stream=True)
            async with stream:  # leaving early closes the HTTP response, which stops the provider
                async for event in stream:
                    if event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                        call_index[event.index] = len(call_index)
                        block = event.content_block
                        yield calls.add(ToolCallDelta(call_index[event.index], block.id, block.name))
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        yield Delta(event.delta.text, 0)
                    elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                        piece = ToolCallDelta(call_index[event.index], arguments=event.delta.partial_json)
                        yield calls.add(piece)
                    elif event.type == "message_delta":
                        reason = event.delta.stop_reason or reason
                        output_tokens = event.usage.output_tokens
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        yield Finished("".join(parts), input_tokens, output_tokens, _finish(reason), tool_calls=calls.done())


def _finish(reason: str | None) -> FinishReason:
    return "tool_calls" if reason == "tool_use" else finish_reason(reason, _LENGTH, _FILTERED)


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """Turns in Anthropic's shape: an assistant's tool calls are tool_use blocks; tool results are
    tool_result blocks of a user turn (one user turn for the results of one assistant turn's calls)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
            add_tool_result(turns, result, lambda block: block.get("type") == "tool_result")
        elif message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments or "{}")}
                for c in message.tool_calls
            ]
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": message.role, "content": message.content})
    return turns


def _tooling(tooling: Tooling) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
        "function": {"type": "tool", "name": tooling.function},
    }[tooling.choice]
    if not tooling.parallel_calls and tooling.choice != "none":
        choice["disable_parallel_tool_use"] = True
    tools = [
        {
            "name": t.name,
            **({"description": t.description} if t.description else {}),
            "input_schema": t.schema(),
        }
        for t in tooling.tools
    ]
    return {"tools": tools, "tool_choice": choice}

"""Anthropic backend on the official `anthropic` SDK (the Messages API)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anthropic

from services.common.errors import MeshError
from services.common.registry import AnthropicConfig
from services.inference.backends.base import Delta, Finished, GenerationInput
from services.inference.backends.cloud import CloudBackend, finish_reason
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

    def _params(self, request: GenerationInput) -> dict[str, Any]:
        system, messages = self.split_system(request)
        params: dict[str, Any] = {
            "model": self.config.model_id,
            "max_tokens": request.sampling.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if system:
            params["system"] = system
        if request.sampling.stop:
            params["stop_sequences"] = list(request.sampling.stop)
        return params

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        params = self._params(request)
        if request.one_shot:
            try:
                message = await self.client.messages.create(**params)
            except anthropic.AnthropicError as exc:
                raise self._error(exc) from exc
            text = "".join(block.text for block in message.content if block.type == "text")
            if text:
                yield Delta(text, message.usage.output_tokens)
            yield Finished(
                text,
                message.usage.input_tokens,
                message.usage.output_tokens,
                finish_reason(message.stop_reason, _LENGTH, _FILTERED),
            )
            return

        parts: list[str] = []
        reason: str | None = None
        input_tokens = output_tokens = 0
        try:
            stream = await self.client.messages.create(**params, stream=True)
            async with stream:  # leaving early closes the HTTP response, which stops the provider
                async for event in stream:
                    if event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        yield Delta(event.delta.text, 0)
                    elif event.type == "message_delta":
                        reason = event.delta.stop_reason or reason
                        output_tokens = event.usage.output_tokens
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        yield Finished("".join(parts), input_tokens, output_tokens, finish_reason(reason, _LENGTH, _FILTERED))

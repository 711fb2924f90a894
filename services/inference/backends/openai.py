"""OpenAI-compatible backend on the official `openai` SDK: OpenAI itself, or any server speaking its
chat completions API (Ollama's /v1, a remote vLLM or llama.cpp server, HF TGI) through `base_url`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import openai

from services.common.errors import MeshError
from services.common.registry import OpenAIConfig
from services.inference.backends.base import Delta, Embeddings, Finished, GenerationInput
from services.inference.backends.cloud import CloudBackend, finish_reason
from services.inference.backends.provider_errors import classify
from services.inference.config import InferenceSettings


class OpenAIBackend(CloudBackend[openai.AsyncOpenAI]):
    kind = "openai"
    provider = "openai"

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
            "messages": [{"role": m.role, "content": m.content} for m in request.as_messages()],
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
        return params

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        params = self._params(request)
        if request.one_shot:
            try:
                completion = await self.client.chat.completions.create(**params)
            except openai.OpenAIError as exc:
                raise self._error(exc) from exc
            choice = completion.choices[0] if completion.choices else None
            text = (choice.message.content if choice else None) or ""
            usage = completion.usage
            if text:
                yield Delta(text, usage.completion_tokens if usage else 0)
            yield Finished(
                text,
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                finish_reason(choice.finish_reason if choice else None, ("length",), ("content_filter",)),
            )
            return

        parts: list[str] = []
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
                            yield Delta(choice.delta.content, 0)
                        reason = choice.finish_reason or reason
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        yield Finished(
            "".join(parts),
            prompt_tokens,
            completion_tokens,
            finish_reason(reason, ("length",), ("content_filter",)),
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

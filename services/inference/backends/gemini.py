"""Google Gemini backend on the official `google-genai` SDK (the Gemini Developer API)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from google import genai
from google.genai import errors, types

from services.common.errors import MeshError
from services.common.registry import GeminiConfig
from services.inference.backends.base import Delta, Embeddings, Finished, GenerationInput
from services.inference.backends.cloud import CloudBackend, finish_reason
from services.inference.backends.provider_errors import classify, is_transport_error
from services.inference.config import InferenceSettings

_LENGTH = ("MAX_TOKENS",)
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII")


def _reason(response: types.GenerateContentResponse) -> str | None:
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None or candidate.finish_reason is None:
        return None
    return str(getattr(candidate.finish_reason, "value", candidate.finish_reason))


class GeminiBackend(CloudBackend[genai.Client]):
    kind = "gemini"
    provider = "gemini"

    def __init__(self, name: str, config: GeminiConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)

    def _connect(self) -> genai.Client:
        # No retry_options: the SDK makes one attempt.
        return genai.Client(
            api_key=self.api_key,
            http_options=types.HttpOptions(
                base_url=self.config.base_url, timeout=int(self.config.timeout_s * 1000)
            ),
        )

    async def _disconnect(self, client: genai.Client) -> None:
        await client.aio.aclose()

    @property
    def models(self) -> Any:
        return self.client.aio.models

    def _error(self, exc: Exception) -> MeshError:
        if not isinstance(exc, errors.APIError) and not is_transport_error(exc):
            raise exc  # not the provider's failure but ours: INTERNAL, traceback in the log
        if isinstance(exc, errors.APIError):
            return classify(
                self.provider,
                self.name,
                exc,
                status=exc.code,
                message=str(exc.message or ""),
                provider_code=str(exc.status or ""),
            )
        return classify(self.provider, self.name, exc)

    def _params(self, request: GenerationInput) -> dict[str, Any]:
        system, messages = self.split_system(request)
        sampling = request.sampling
        config = types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop_sequences=list(sampling.stop) or None,
        )
        contents = [
            types.Content(
                role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)]
            )
            for m in messages
        ]
        return {"model": self.config.model_id, "contents": contents, "config": config}

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        params = self._params(request)
        if request.one_shot:
            try:
                response = await self.models.generate_content(**params)
            except Exception as exc:
                raise self._error(exc) from exc
            text = response.text or ""
            usage = response.usage_metadata
            completion = (usage.candidates_token_count or 0) if usage else 0
            if text:
                yield Delta(text, completion)
            yield Finished(
                text,
                (usage.prompt_token_count or 0) if usage else 0,
                completion,
                finish_reason(_reason(response), _LENGTH, _FILTERED),
            )
            return

        parts: list[str] = []
        reason: str | None = None
        prompt_tokens = completion_tokens = 0
        try:
            stream = await self.models.generate_content_stream(**params)
            try:
                async for chunk in stream:
                    if chunk.usage_metadata:
                        prompt_tokens = chunk.usage_metadata.prompt_token_count or prompt_tokens
                        completion_tokens = chunk.usage_metadata.candidates_token_count or completion_tokens
                    reason = _reason(chunk) or reason
                    if chunk.text:
                        parts.append(chunk.text)
                        yield Delta(chunk.text, 0)
            finally:
                await stream.aclose()  # leaving early closes the HTTP response
        except Exception as exc:
            raise self._error(exc) from exc
        yield Finished(
            "".join(parts), prompt_tokens, completion_tokens, finish_reason(reason, _LENGTH, _FILTERED)
        )

    async def embed(self, inputs: list[str]) -> Embeddings:
        try:
            response = await self.models.embed_content(model=self.config.model_id, contents=inputs)
        except Exception as exc:
            raise self._error(exc) from exc
        vectors = [list(embedding.values or []) for embedding in response.embeddings or []]
        return Embeddings(vectors=vectors, prompt_tokens=0)

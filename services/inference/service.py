"""The inference domain: which backend serves a model, and what a valid generation request is."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

from services.inference.backends.base import Backend, Delta, Finished, GenerationInput, Message, Sampling
from services.inference.config import InferenceSettings
from services.inference.errors import InvalidGenerationRequest, ModelNotFound


class InferenceService:
    """Routes a generation to the backend that serves the named model, after validating it."""

    def __init__(self, backends: Iterable[Backend], settings: InferenceSettings) -> None:
        self.backends = {backend.model_name: backend for backend in backends}
        self._settings = settings

    def backend_for(self, model: str) -> Backend:
        if not model:
            raise InvalidGenerationRequest("model is required")
        backend = self.backends.get(model)
        if backend is None:
            known = ", ".join(sorted(self.backends))
            raise ModelNotFound(f"model {model!r} is not served here; known models: {known}")
        return backend

    def sampling(
        self,
        max_tokens: int,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        stop: Iterable[str],
    ) -> Sampling:
        """Validated sampling parameters with the service's defaults filled in."""
        if max_tokens < 0:
            raise InvalidGenerationRequest("max_tokens must not be negative")
        if temperature is not None and not 0 <= temperature <= 2:
            raise InvalidGenerationRequest("temperature must be between 0 and 2")
        if top_p is not None and not 0 < top_p <= 1:
            raise InvalidGenerationRequest("top_p must be greater than 0 and at most 1")
        stops = tuple(stop)
        if len(stops) > 4 or any(len(s) > 64 for s in stops):
            raise InvalidGenerationRequest("at most 4 stop strings of at most 64 characters")
        return Sampling(
            max_tokens=max_tokens or self._settings.default_max_tokens,
            temperature=self._settings.default_temperature if temperature is None else temperature,
            top_p=self._settings.default_top_p if top_p is None else top_p,
            seed=seed,
            stop=stops,
        )

    @staticmethod
    def generation_input(sampling: Sampling, prompt: str | None, messages: list[Message]) -> GenerationInput:
        if prompt is not None:
            if not prompt:
                raise InvalidGenerationRequest("prompt must not be empty")
            return GenerationInput(sampling=sampling, prompt=prompt)
        if not messages:
            raise InvalidGenerationRequest("give a prompt or at least one message")
        if messages[-1].role == "assistant":
            raise InvalidGenerationRequest("the last message must not be the assistant's")
        return GenerationInput(sampling=sampling, messages=tuple(messages))

    def generate(self, model: str, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        return self.backend_for(model).generate(request)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()

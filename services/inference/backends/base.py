"""The backend interface every model engine implements, and the plain types it speaks."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationInput:
    """Either a raw prompt or chat messages (rendered with the model's turn template)."""

    sampling: Sampling
    prompt: str | None = None
    messages: Sequence[Message] = field(default_factory=tuple)


@dataclass(frozen=True)
class Delta:
    text: str
    tokens: int


@dataclass(frozen=True)
class Finished:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class Backend(abc.ABC):
    """One model, loaded once and kept warm, generating as an async stream of deltas."""

    kind: str = "unknown"

    def __init__(self, model_name: str, context_length: int) -> None:
        self.model_name = model_name
        self.context_length = context_length
        self.loaded = False

    @abc.abstractmethod
    async def load(self) -> None:
        """Load the model; the service reports NOT_SERVING until this returns."""

    @abc.abstractmethod
    def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        """Yield deltas as they are produced, then exactly one Finished.

        Closing the iterator early (the client went away) must stop the generation.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to free
        """Release the model."""

"""Frames of the realtime chat WebSocket (JSON text frames, one object each, told apart by `type`).

Client → server: `chat` (start a turn), `cancel` (stop the turn in progress), `ping`.
Server → client: `delta` (text as it is generated), `done` (the turn's whole text, usage, finish
reason), `cancelled`, `error` (the socket stays open for the next turn), `pong`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common import results
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS
from services.gateway.openai.protocol import MAX_MESSAGES, ChatMessage, ConversationId

TurnId = Annotated[str, Field(min_length=1, max_length=64)]


class ChatFrame(BaseModel):
    """Start a turn: either `content` (one user message) or OpenAI-style `messages`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["chat"]
    id: TurnId | None = Field(default=None, description="Echoed on every frame of this turn.")
    model: str | None = Field(default=None, min_length=1, max_length=128)
    content: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    conversation_id: ConversationId | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(default=None, max_length=4)

    @model_validator(mode="after")
    def _one_input(self) -> ChatFrame:
        if (self.content is None) == (self.messages is None):
            raise ValueError("send either content or messages")
        return self


class CancelFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["cancel"]
    id: TurnId | None = None


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ping"]


ClientFrame = Annotated[ChatFrame | CancelFrame | PingFrame, Field(discriminator="type")]


class DeltaFrame(BaseModel):
    type: Literal["delta"] = "delta"
    id: str | None
    text: str


class DoneFrame(results.Generation):
    """The turn's generation, as POST /api/v1/ai/generate returns it, with the frame's type and id."""

    type: Literal["done"] = "done"
    id: str | None
    request_id: str

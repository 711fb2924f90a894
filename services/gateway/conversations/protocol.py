"""Schemas of the conversations endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, Field

from services.common.enums import ROLE_NAMES


class ToolCall(BaseModel):
    id: str
    name: str
    # JSON text, as the model wrote it
    arguments: str


class Turn(BaseModel):
    role: Literal["user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCall] | None = Field(default=None, description="An assistant turn's tool calls.")
    tool_call_id: str | None = Field(default=None, description="A tool turn: the call it answers.")

    @classmethod
    def from_proto(cls, message: common_pb2.ChatMessage) -> Turn:
        calls = [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls]
        return cls(
            role=ROLE_NAMES[message.role],
            content=message.content,
            tool_calls=calls or None,
            tool_call_id=message.tool_call_id or None,
        )


class Conversation(BaseModel):
    conversation_id: str
    messages: list[Turn]
    created_at: datetime
    updated_at: datetime
    request_id: str

    @classmethod
    def from_proto(cls, conversation: store_pb2.StoredConversation, request_id: str) -> Conversation:
        return cls(
            conversation_id=conversation.conversation_id,
            messages=[Turn.from_proto(m) for m in conversation.messages],
            created_at=conversation.created_at.ToDatetime(tzinfo=UTC),
            updated_at=conversation.updated_at.ToDatetime(tzinfo=UTC),
            request_id=request_id,
        )

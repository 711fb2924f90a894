"""Schemas of the conversations endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel

from services.common.enums import ROLE_NAMES


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


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
            messages=[Turn(role=ROLE_NAMES[m.role], content=m.content) for m in conversation.messages],
            created_at=conversation.created_at.ToDatetime(tzinfo=UTC),
            updated_at=conversation.updated_at.ToDatetime(tzinfo=UTC),
            request_id=request_id,
        )

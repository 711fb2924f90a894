"""Stored conversations: the chats the mesh remembers, per project, turn by turn."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from services.common.errors import shown
from services.store.errors import ConversationNotFound, InvalidStoreRequest
from services.store.repository import unit_of_work
from services.store.tables import Conversation, ConversationMessage, utcnow

_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
STORED_ROLES = frozenset({"user", "assistant", "tool"})


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    # An assistant turn's calls as {"id", "name", "arguments"}; a tool turn's call id.
    tool_calls: tuple[dict[str, str], ...] = ()
    tool_call_id: str = ""


def check_conversation_id(conversation_id: str) -> None:
    if not _CONVERSATION_ID.match(conversation_id):
        raise InvalidStoreRequest(
            "conversation_id must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
        )


class Conversations:
    """Reads, appends to and deletes conversations, per project."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    async def get(self, project: str, conversation_id: str) -> Conversation:
        check_conversation_id(conversation_id)
        async with self._transaction() as db:
            conversation = await db.scalar(
                select(Conversation)
                .where(Conversation.project_id == project, Conversation.conversation_id == conversation_id)
                .options(selectinload(Conversation.messages))
            )
        if conversation is None:
            raise ConversationNotFound(f"no conversation has id {shown(conversation_id)}")
        return conversation

    async def append(self, project: str, conversation_id: str, turns: Sequence[Turn]) -> int:
        """Append turns (creating the conversation on first use); the number of turns it now holds."""
        check_conversation_id(conversation_id)
        if not turns:
            raise InvalidStoreRequest("nothing to append")
        if any(turn.role not in STORED_ROLES for turn in turns):
            raise InvalidStoreRequest("a conversation stores user, assistant and tool turns only")
        for attempt in range(2):
            try:
                return await self._append(project, conversation_id, turns)
            except IntegrityError:
                if attempt:  # a concurrent append took the same positions twice in a row
                    raise
        raise AssertionError("unreachable")

    async def _append(self, project: str, conversation_id: str, turns: Sequence[Turn]) -> int:
        async with self._transaction() as db:
            conversation = await db.scalar(
                select(Conversation).where(
                    Conversation.project_id == project, Conversation.conversation_id == conversation_id
                )
            )
            if conversation is None:
                conversation = Conversation(project_id=project, conversation_id=conversation_id)
                db.add(conversation)
                await db.flush()
                last = -1
            else:
                conversation.updated_at = utcnow()
                last = await db.scalar(  # type: ignore[assignment]
                    select(func.coalesce(func.max(ConversationMessage.position), -1)).where(
                        ConversationMessage.conversation_pk == conversation.id
                    )
                )
            db.add_all(
                ConversationMessage(
                    conversation_pk=conversation.id,
                    position=last + 1 + index,
                    role=t.role,
                    content=t.content,
                    tool_calls=list(t.tool_calls) or None,
                    tool_call_id=t.tool_call_id or None,
                )
                for index, t in enumerate(turns)
            )
            return last + 1 + len(turns)

    async def delete(self, project: str, conversation_id: str) -> None:
        check_conversation_id(conversation_id)
        async with self._transaction() as db:
            deleted = await db.execute(
                delete(Conversation).where(
                    Conversation.project_id == project, Conversation.conversation_id == conversation_id
                )
            )
        if not deleted.rowcount:  # type: ignore[attr-defined]
            raise ConversationNotFound(f"no conversation has id {shown(conversation_id)}")

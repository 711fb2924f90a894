"""API keys and stored conversations: who may call the mesh, and the chats it remembers for them."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from services.store.errors import ApiKeyNotFound, ConversationNotFound, InvalidApiKey, InvalidStoreRequest
from services.store.models import ApiKey, Conversation, ConversationMessage, utcnow
from services.store.repository import unit_of_work

KEY_PREFIX = "lmk"
_KEY = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{20,100}})$")
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
STORED_ROLES = frozenset({"user", "assistant"})


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_conversation_id(conversation_id: str) -> None:
    if not _CONVERSATION_ID.match(conversation_id):
        raise InvalidStoreRequest(
            "conversation_id must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
        )


class Access:
    """API keys (hashed) and per-owner conversations."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    async def create_key(self, name: str, rpm_limit: int, tpm_limit: int) -> tuple[ApiKey, str]:
        """A new key and the whole secret to hand out once: `lmk_<id>_<secret>`."""
        if not name.strip() or len(name) > 100:
            raise InvalidStoreRequest("an API key needs a name of 1-100 characters")
        if rpm_limit < 0 or tpm_limit < 0:
            raise InvalidStoreRequest("rate limits must be 0 (the default) or more")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id, name=name, secret_hash=_digest(secret), rpm_limit=rpm_limit, tpm_limit=tpm_limit
        )
        async with self._transaction() as db:
            db.add(key)
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    async def list_keys(self) -> Sequence[ApiKey]:
        async with self._transaction() as db:
            return (await db.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))).all()

    async def revoke_key(self, key_id: str) -> ApiKey:
        async with self._transaction() as db:
            key = await db.get(ApiKey, key_id)
            if key is None:
                raise ApiKeyNotFound(f"no API key has id {key_id!r}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            return key

    async def verify_key(self, presented: str) -> ApiKey:
        """The live key whose secret was presented. Every failure reads the same to the caller."""
        match = _KEY.match(presented)
        async with self._transaction() as db:
            key = await db.get(ApiKey, match.group(1)) if match else None
        # Compare against a digest even when there is no such key, so timing says nothing either way.
        expected = key.secret_hash if key is not None else _digest(secrets.token_urlsafe(32))
        given = _digest(match.group(2)) if match else ""
        if not hmac.compare_digest(expected, given) or key is None or key.revoked_at is not None:
            raise InvalidApiKey("the API key is not valid")
        return key

    async def get_conversation(self, owner: str, conversation_id: str) -> Conversation:
        check_conversation_id(conversation_id)
        async with self._transaction() as db:
            conversation = await db.scalar(
                select(Conversation)
                .where(Conversation.owner == owner, Conversation.conversation_id == conversation_id)
                .options(selectinload(Conversation.messages))
            )
        if conversation is None:
            raise ConversationNotFound(f"no conversation has id {conversation_id!r}")
        return conversation

    async def append(self, owner: str, conversation_id: str, turns: Sequence[Turn]) -> int:
        """Append turns (creating the conversation on first use); the number of turns it now holds."""
        check_conversation_id(conversation_id)
        if not turns:
            raise InvalidStoreRequest("nothing to append")
        if any(turn.role not in STORED_ROLES for turn in turns):
            raise InvalidStoreRequest("a conversation stores user and assistant turns only")
        for attempt in range(2):
            try:
                return await self._append(owner, conversation_id, turns)
            except IntegrityError:
                if attempt:  # a concurrent append took the same positions twice in a row
                    raise
        raise AssertionError("unreachable")

    async def _append(self, owner: str, conversation_id: str, turns: Sequence[Turn]) -> int:
        async with self._transaction() as db:
            conversation = await db.scalar(
                select(Conversation).where(
                    Conversation.owner == owner, Conversation.conversation_id == conversation_id
                )
            )
            if conversation is None:
                conversation = Conversation(owner=owner, conversation_id=conversation_id)
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
                    conversation_pk=conversation.id, position=last + 1 + index, role=t.role, content=t.content
                )
                for index, t in enumerate(turns)
            )
            return last + 1 + len(turns)

    async def delete_conversation(self, owner: str, conversation_id: str) -> None:
        check_conversation_id(conversation_id)
        async with self._transaction() as db:
            deleted = await db.execute(
                delete(Conversation).where(
                    Conversation.owner == owner, Conversation.conversation_id == conversation_id
                )
            )
        if not deleted.rowcount:  # type: ignore[attr-defined]
            raise ConversationNotFound(f"no conversation has id {conversation_id!r}")

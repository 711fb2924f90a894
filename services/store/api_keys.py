"""API keys: who may call the mesh. Only a key's hash is stored; its secret is shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.errors import InvalidApiKey, shown
from services.store.errors import ApiKeyNotFound, InvalidStoreRequest
from services.store.repository import unit_of_work
from services.store.tables import ApiKey, utcnow

KEY_PREFIX = "lmk"
_KEY = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{20,100}})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Creates, lists, revokes and verifies API keys (hashed)."""

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
                raise ApiKeyNotFound(f"no API key has id {shown(key_id)}")
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

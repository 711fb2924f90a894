"""Projects and their API keys: who may call the mesh, for which project, to do what. Only a key's
hash is stored; its secret is shown once."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.errors import InvalidApiKey, ProjectNotFound, shown
from services.common.tenancy import API_KEY_PREFIX, DEFAULT_SCOPES, PROJECT_ID, SCOPES
from services.store.errors import ApiKeyNotFound, InvalidStoreRequest, ProjectExists
from services.store.repository import unit_of_work
from services.store.tables import ApiKey, Project, utcnow

_KEY = re.compile(rf"^{API_KEY_PREFIX}([0-9a-f]{{12}})_([A-Za-z0-9_-]{{20,100}})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _checked_scopes(scopes: Sequence[str]) -> list[str]:
    """The scopes a new key gets: those asked for (known ones, each once), or the default set."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidStoreRequest(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in scopes] if scopes else list(DEFAULT_SCOPES)


class ApiKeys:
    """Creates and lists projects; creates, lists, revokes and verifies API keys (hashed)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    async def create_project(self, project_id: str, name: str) -> Project:
        if not PROJECT_ID.fullmatch(project_id):
            raise InvalidStoreRequest(
                "a project id must be 1-32 lower-case letters, digits or '-', starting with a letter or digit"
            )
        if not name.strip() or len(name) > 100:
            raise InvalidStoreRequest("a project needs a name of 1-100 characters")
        project = Project(id=project_id, name=name, created_at=utcnow())
        try:
            async with self._transaction() as db:
                db.add(project)
        except IntegrityError as exc:
            raise ProjectExists(f"a project with id {project_id!r} already exists") from exc
        return project

    async def list_projects(self) -> Sequence[Project]:
        async with self._transaction() as db:
            return (await db.scalars(select(Project).order_by(Project.created_at, Project.id))).all()

    async def create_key(
        self, project: str, name: str, scopes: Sequence[str], rpm_limit: int, tpm_limit: int
    ) -> tuple[ApiKey, str]:
        """A new key of `project` and the whole secret to hand out once: `lmk_<id>_<secret>`."""
        if not name.strip() or len(name) > 100:
            raise InvalidStoreRequest("an API key needs a name of 1-100 characters")
        if rpm_limit < 0 or tpm_limit < 0:
            raise InvalidStoreRequest("rate limits must be 0 (the default) or more")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(
            id=key_id,
            project_id=project,
            name=name,
            scopes=_checked_scopes(scopes),
            secret_hash=_digest(secret),
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
        )
        async with self._transaction() as db:
            if await db.get(Project, project) is None:
                raise ProjectNotFound(f"no project has id {shown(project)}")
            db.add(key)
        return key, f"{API_KEY_PREFIX}{key_id}_{secret}"

    async def list_keys(self, project: str | None) -> Sequence[ApiKey]:
        """The keys of `project`, or of every project when None."""
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if project is not None:
            query = query.where(ApiKey.project_id == project)
        async with self._transaction() as db:
            return (await db.scalars(query)).all()

    async def revoke_key(self, key_id: str, project: str | None) -> ApiKey:
        """Revoke a key of `project` (any project's when None); another project's is not found."""
        async with self._transaction() as db:
            key = await db.get(ApiKey, key_id)
            if key is None or (project is not None and key.project_id != project):
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

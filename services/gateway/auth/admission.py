"""Who is calling and whether to serve them now: API key, rate limits, generations in flight.

`authenticate` runs on every API route (a dependency added where the routers are included, with the
scope the routes need); it makes the key's project the one every call of the request acts for.
`generation_slot` runs on routes that run a model. The slot is given back by RequestLimitsMiddleware
when the response (a whole stream included) has been sent.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from fastapi import Request
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import MeshError, ProjectNotFound, shown
from services.common.tenancy import API_KEY_PREFIX, DEFAULT_PROJECT, SCOPES, set_project
from services.gateway.auth.limiter import Limiter, create_limiter
from services.gateway.auth.limits import FailureLimit
from services.gateway.config import GatewaySettings
from services.gateway.errors import (
    AdminDisabled,
    InvalidAdminToken,
    InvalidApiKey,
    MissingScope,
    Unauthenticated,
)
from services.store.client import StoreClient

_BEARER = "bearer "
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Verified keys remembered at most (least recently used forgotten first).
_MAX_CACHED_KEYS = 10_000
# scope["state"] key marking a request that holds a generation slot.
SLOT_STATE = "generation_slot"
# A key check is one store read, and every request waits on it: a store slower than this is failing.
_VERIFY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Caller:
    """The key a request was made with: its project, what it may do, its limits (0: unlimited)."""

    key_id: str
    name: str
    rpm: int
    tpm: int
    project_id: str
    scopes: frozenset[str]


# Every request when auth is off: one anonymous caller in the default project, allowed everything
# the API offers, no per-key limits.
ANONYMOUS = Caller(
    key_id="", name="anonymous", rpm=0, tpm=0, project_id=DEFAULT_PROJECT, scopes=frozenset(SCOPES)
)


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip() or None
    return None


class Admission:
    """Key verification (through the store, cached briefly), rate limits and the concurrency limit."""

    def __init__(self, settings: GatewaySettings, store: StoreClient) -> None:
        self._settings = settings
        self._store = store
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        # Keys the store refused, by digest, until when: the same bad key again costs no store read.
        self._refused: OrderedDict[str, float] = OrderedDict()
        self.failures = FailureLimit(settings.invalid_key_rpm)
        self.limiter: Limiter = create_limiter(settings)

    async def identify(self, token: str | None, client: str) -> Caller:
        """The caller whose API key this is (anonymous when auth is off); `client` (its address) is
        throttled after too many invalid keys."""
        if not self._settings.auth_enabled:
            return ANONYMOUS
        if token is None:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'", _CHALLENGE)
        return await self._verify(token, client)

    async def admit(self, caller: Caller) -> None:
        """Count one request against the caller's limits, or raise RateLimited."""
        if caller.key_id:
            await self.limiter.admit(caller.key_id, caller.rpm, caller.tpm)

    async def _verify(self, token: str, client: str) -> Caller:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._verified.get(digest)
        if cached is not None and cached[1] > now:
            self._verified.move_to_end(digest)
            return cached[0]
        if self._refused.get(digest, 0.0) > now:
            self.failures.failed(client)
            raise InvalidApiKey("the API key is not valid (unknown or revoked)", _CHALLENGE)
        self.failures.check(client)
        try:
            answer = await self._store.verify_api_key(
                store_pb2.VerifyApiKeyRequest(secret=token), timeout_s=_VERIFY_TIMEOUT_S
            )
        except MeshError as error:
            if error.status == grpc.StatusCode.UNAUTHENTICATED:
                self.failures.failed(client)
                self._refused[digest] = now + self._settings.api_key_cache_s
                while len(self._refused) > _MAX_CACHED_KEYS:
                    self._refused.popitem(last=False)
                raise InvalidApiKey("the API key is not valid (unknown or revoked)", _CHALLENGE) from error
            raise
        key = answer.key
        caller = Caller(
            key_id=key.id,
            name=key.name,
            rpm=key.rpm_limit or self._settings.default_rpm,
            tpm=key.tpm_limit or self._settings.default_tpm,
            project_id=key.project_id,
            scopes=frozenset(key.scopes),
        )
        self._verified[digest] = (caller, time.monotonic() + self._settings.api_key_cache_s)
        while len(self._verified) > _MAX_CACHED_KEYS:
            self._verified.popitem(last=False)
        return caller

    def forget(self, key_id: str) -> None:
        """Stop trusting a key at once (it was just revoked)."""
        for digest in [d for d, (caller, _) in self._verified.items() if caller.key_id == key_id]:
            del self._verified[digest]

    def charge(self, caller: Caller, usage: common_pb2.Usage) -> None:
        """Count a finished generation's tokens against its caller's tokens-per-minute."""
        if caller.key_id:
            tokens = usage.prompt_tokens + usage.completion_tokens
            self.limiter.charge_tokens(caller.key_id, caller.rpm, caller.tpm, tokens)

    async def admin(self, authorization: str | None, client: str) -> Administrator:
        """Who is using the admin API: the operator (GATEWAY_ADMIN_TOKEN, every project) or, when auth
        is on, an API key with the admin scope (its own project only)."""
        token = bearer_token(authorization) or ""
        expected = self._settings.admin_token
        if expected is not None and hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
            return Administrator(project_id=None)
        if self._settings.auth_enabled and token and token.startswith(API_KEY_PREFIX):
            caller = await self._verify(token, client)
            check_scope(caller, ("admin",))
            return Administrator(project_id=caller.project_id)
        if expected is None:
            raise AdminDisabled(
                "the admin API is disabled: set GATEWAY_ADMIN_TOKEN (or use a key with the admin scope)"
            )
        raise InvalidAdminToken("the admin token is missing or wrong", _CHALLENGE)


@dataclass(frozen=True)
class Administrator:
    """A caller of the admin API: the operator (project_id None: every project) or a project's admin."""

    project_id: str | None

    def project_for(self, asked: str | None) -> str | None:
        """The project an admin call acts on: the operator's choice (None: all), or a project admin's
        own; another project, named by a project admin, is not found to it (as everywhere)."""
        if self.project_id is None:
            return asked
        if asked is not None and asked != self.project_id:
            raise ProjectNotFound(f"no project has id {shown(asked)}")
        return self.project_id


def admission_of(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


def check_scope(caller: Caller, scopes: tuple[str, ...]) -> None:
    """Refuse a caller whose key has none of `scopes`."""
    if caller.scopes.isdisjoint(scopes):
        needed = " or ".join(repr(scope) for scope in scopes)
        raise MissingScope(
            f"this API key may not do this: it needs the {needed} scope "
            f"(it has: {', '.join(sorted(caller.scopes)) or 'none'})"
        )


def authenticate(*scopes: str) -> Callable[[Request], Awaitable[Caller]]:
    """The dependency of API routes that need one of `scopes`: the caller, admitted under its rate
    limits, with its project made the one every call of this request acts for."""

    async def authenticated(request: Request) -> Caller:
        admission = admission_of(request)
        client = request.client.host if request.client else "unknown"
        # Authorization: Bearer first; else x-api-key, the header Anthropic's clients send the key in.
        token = (
            bearer_token(request.headers.get("authorization")) or request.headers.get("x-api-key", "").strip()
        )
        caller = await admission.identify(token or None, client)
        check_scope(caller, scopes)
        await admission.admit(caller)
        request.state.caller = caller
        # The request runs in its own task (and its context): the project stays with this request.
        set_project(caller.project_id)
        return caller

    return authenticated


def caller_of(request: Request) -> Caller:
    caller: Caller = getattr(request.state, "caller", ANONYMOUS)
    return caller


def charge(request: Request, usage: common_pb2.Usage) -> None:
    admission_of(request).charge(caller_of(request), usage)


async def generation_slot(request: Request) -> None:
    """Dependency of routes that run a model: one of the mesh's generation slots, or 503 at once
    (given back by RequestLimitsMiddleware when the response ends)."""
    slot = await admission_of(request).limiter.acquire()
    request.scope.setdefault("state", {})[SLOT_STATE] = slot


async def administrator(request: Request) -> Administrator:
    """Dependency of the admin API: who is calling it."""
    client = request.client.host if request.client else "unknown"
    return await admission_of(request).admin(request.headers.get("authorization"), client)

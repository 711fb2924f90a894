"""Where a gateway keeps its limits: in this process, or on Redis so they hold across every replica.

Both keep the same rules (services/gateway/auth/limits.py): a key's requests and tokens per minute as
token buckets holding a minute's worth, and a cap on generations in flight. On Redis each decision is
one Lua script, atomic across replicas and timed by the Redis server's clock. Buckets are keyed by
(key, rpm, tpm) as in-process: a key whose limits changed starts afresh. A generation's slot is a
member of a sorted set scored by when it lapses (the request timeout), so a replica that dies frees
its slots by itself.

When Redis cannot be reached the decision follows GATEWAY_REDIS_FAILURE: `open` admits (the mesh
stays up, limits hold per replica no more), `closed` refuses with 503 `limiter_unavailable`; either
way it is counted in llmmesh_gateway_limiter_errors_total and logged, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.gateway.auth.limits import ConcurrencyLimit, RateLimits, retry_after
from services.gateway.config import GatewaySettings
from services.gateway.errors import LimiterUnavailable, Overloaded, RateLimited
from services.gateway.metrics import LIMITER_ERRORS

log = logging.getLogger("llmmesh.gateway.limits")

# A bucket's level after refilling: at most a minute's worth (ARGV per_minute), from its stored
# level and stamp (or full when new), as of the server's clock.
_LEVEL = """
local function level(key, per_minute, now)
  local stored = redis.call('HMGET', key, 'level', 'stamp')
  local lvl, stamp = tonumber(stored[1]), tonumber(stored[2])
  if lvl == nil then return per_minute end
  return math.min(per_minute, lvl + (now - stamp) * per_minute / 60)
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
"""
# KEYS: requests bucket, tokens bucket; ARGV: rpm, tpm. {0} admitted, {1|2, wait_s} refused by the
# requests (1) or tokens (2) bucket. Any token left admits: a request's cost is known when it ends.
_ADMIT = (
    _LEVEL
    + """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 then
  local tokens = level(KEYS[2], tpm, now)
  if tokens < 1 then return {2, tostring((1 - tokens) * 60 / tpm)} end
end
if rpm > 0 then
  local requests = level(KEYS[1], rpm, now)
  if requests < 1 then return {1, tostring((1 - requests) * 60 / rpm)} end
  redis.call('HSET', KEYS[1], 'level', tostring(requests - 1), 'stamp', tostring(now))
  redis.call('EXPIRE', KEYS[1], 120)
end
return {0, '0'}
"""
)
# KEYS: tokens bucket; ARGV: tpm, tokens. The bucket may be overdrawn; it is kept until refilled.
_CHARGE = (
    _LEVEL
    + """
local tpm, spent = tonumber(ARGV[1]), tonumber(ARGV[2])
local left = level(KEYS[1], tpm, now) - spent
redis.call('HSET', KEYS[1], 'level', tostring(left), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], 120 + math.ceil(math.max(0, -left) * 60 / tpm))
return 0
"""
)
# KEYS: the slots set; ARGV: limit, member, seconds it may hold the slot. 1 acquired, 0 at the limit.
_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return 1
"""


class Limiter(Protocol):
    """A gateway's limits: admit a request, charge its tokens, hold and give back a generation slot."""

    async def admit(self, key_id: str, rpm: int, tpm: int) -> None:
        """Count one request of the key, or raise RateLimited."""

    def charge_tokens(self, key_id: str, rpm: int, tpm: int, tokens: int) -> None:
        """Count a finished generation's tokens (not awaited: the count may land a moment later)."""

    async def acquire(self) -> str:
        """A generation slot (its token, to give back), or raise Overloaded."""

    async def release(self, slot: str) -> None:
        """Give a slot back; returns once it is free for any replica."""

    def release_soon(self, slot: str) -> None:
        """Give a slot back without waiting (from code that cannot await)."""

    async def close(self) -> None: ...


class LocalLimiter:
    """The limits of this gateway process alone."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.rates = RateLimits()
        self.concurrency = ConcurrencyLimit(settings.max_concurrent_requests)

    async def admit(self, key_id: str, rpm: int, tpm: int) -> None:
        self.rates.admit(key_id, rpm, tpm)

    def charge_tokens(self, key_id: str, rpm: int, tpm: int, tokens: int) -> None:
        self.rates.charge_tokens(key_id, tokens)

    async def acquire(self) -> str:
        self.concurrency.acquire()
        return "local"

    async def release(self, slot: str) -> None:
        self.concurrency.release()

    def release_soon(self, slot: str) -> None:
        self.concurrency.release()

    async def close(self) -> None:
        return None


class RedisLimiter:
    """The limits of every gateway that shares this Redis and prefix."""

    def __init__(self, settings: GatewaySettings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._prefix = settings.redis_prefix
        self._admit = redis.register_script(_ADMIT)
        self._charge = redis.register_script(_CHARGE)
        self._acquire = redis.register_script(_ACQUIRE)
        self._slots = f"{self._prefix}:slots"
        self._pending: set[asyncio.Task[Any]] = set()

    def _bucket(self, key_id: str, rpm: int, tpm: int, kind: str) -> str:
        return f"{self._prefix}:limits:{key_id}:{rpm}:{tpm}:{kind}"

    @staticmethod
    def _failed(operation: str, exc: Exception) -> None:
        """Count and log an operation Redis did not answer."""
        LIMITER_ERRORS.labels(operation).inc()
        log.warning("limiter unreachable", extra={"operation": operation, "error": type(exc).__name__})

    def _unreachable(self, operation: str, exc: Exception) -> None:
        """A decision Redis did not answer: counted; LimiterUnavailable when failing closed."""
        self._failed(operation, exc)
        if self._settings.redis_failure == "closed":
            raise LimiterUnavailable("the shared rate limiter is unreachable; retry shortly", retry_after(1))

    async def admit(self, key_id: str, rpm: int, tpm: int) -> None:
        if not rpm and not tpm:
            return
        keys = [self._bucket(key_id, rpm, tpm, "requests"), self._bucket(key_id, rpm, tpm, "tokens")]
        try:
            refused, wait_s = await self._admit(keys=keys, args=[rpm, tpm])
        except RedisError as exc:
            self._unreachable("admit", exc)
            return
        if int(refused) == 1:
            raise RateLimited(
                f"the API key is over its limit of {rpm} requests per minute", retry_after(float(wait_s))
            )
        if int(refused) == 2:
            raise RateLimited(
                f"the API key is over its limit of {tpm} tokens per minute", retry_after(float(wait_s))
            )

    def charge_tokens(self, key_id: str, rpm: int, tpm: int, tokens: int) -> None:
        if tpm and tokens > 0:
            self._later(
                "charge", self._charge(keys=[self._bucket(key_id, rpm, tpm, "tokens")], args=[tpm, tokens])
            )

    async def acquire(self) -> str:
        slot = uuid.uuid4().hex
        limit = self._settings.max_concurrent_requests
        try:
            acquired = await self._acquire(
                keys=[self._slots], args=[limit, slot, self._settings.request_timeout_s]
            )
        except RedisError as exc:
            self._unreachable("acquire", exc)
            return ""
        if not int(acquired):
            raise Overloaded(
                f"the mesh is at its limit of {limit} generations in flight; retry shortly", retry_after(1)
            )
        return slot

    async def release(self, slot: str) -> None:
        if not slot:
            return
        try:
            await self._redis.zrem(self._slots, slot)
        except RedisError as exc:  # the slot lapses by itself after the request timeout
            self._failed("release", exc)

    def release_soon(self, slot: str) -> None:
        if slot:
            self._later("release", self.release(slot))

    def _later(self, operation: str, call: Any) -> None:
        """Run a write that nobody waits for; a failure is counted, never raised into a response."""

        async def run() -> None:
            try:
                await call
            except RedisError as exc:
                self._failed(operation, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._redis.aclose()


def create_limiter(settings: GatewaySettings) -> Limiter:
    """Redis-backed when GATEWAY_REDIS_URL is set, else this process's own."""
    if settings.redis_url is None:
        return LocalLimiter(settings)
    redis = Redis.from_url(
        settings.redis_url.get_secret_value(),
        # A limit decision waits this long for Redis at most; then GATEWAY_REDIS_FAILURE decides.
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    return RedisLimiter(settings, redis)

"""Per-key rate limits (token buckets), failed key attempts per client, and the gateway's global
limit on generations in flight.

These are the rules, kept in this gateway process; services/gateway/auth/limiter.py keeps the same
ones on Redis when GATEWAY_REDIS_URL is set, so that they hold across every replica.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from services.gateway.errors import Overloaded, RateLimited

# Buckets of this many keys at most are kept; the least recently used is forgotten (and refilled).
MAX_TRACKED_KEYS = 10_000


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


@dataclass
class TokenBucket:
    """`per_minute` units a minute, in bursts of up to a minute's worth. A charge may overdraw the
    bucket (token counts are known only after a generation); requests wait until it is refilled."""

    per_minute: int
    level: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = float(self.per_minute)

    def _refill(self, now: float) -> None:
        self.level = min(self.per_minute, self.level + (now - self.stamp) * self.per_minute / 60)
        self.stamp = now

    def wait_s(self, need: float, now: float) -> float:
        """Seconds until `need` units are available (0: now)."""
        self._refill(now)
        return 0.0 if self.level >= need else (need - self.level) * 60 / self.per_minute

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount


@dataclass
class _KeyBuckets:
    # The (rpm, tpm) these buckets were made for: a key whose limits changed gets fresh ones.
    limits: tuple[int, int]
    requests: TokenBucket | None
    tokens: TokenBucket | None


class FailureLimit:
    """Failed attempts per client address, `per_minute` at most (0: unlimited): past that, the
    client's next attempts are refused unchecked until its bucket refills, so guessing keys costs the
    store nothing and the guesser a wait."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._clock = clock

    def check(self, client: str) -> None:
        """Raise RateLimited while `client` has no failed attempt left."""
        bucket = self._buckets.get(client)
        if bucket is not None:
            wait = bucket.wait_s(1, self._clock())
            if wait:
                raise RateLimited(
                    f"too many invalid API keys from this address (at most {self.per_minute} a minute)",
                    retry_after(wait),
                )

    def failed(self, client: str) -> None:
        """Count one failed attempt of `client`."""
        if not self.per_minute:
            return
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.per_minute, stamp=self._clock())
            while len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(client)
        bucket.take(1, self._clock())


class RateLimits:
    """Requests-per-minute and tokens-per-minute buckets per key (a limit of 0 has no bucket).

    `clock` (monotonic seconds) is injectable so tests can stand at a refill's exact edge.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: OrderedDict[str, _KeyBuckets] = OrderedDict()
        self._clock = clock

    def _for(self, key_id: str, rpm: int, tpm: int) -> _KeyBuckets:
        buckets = self._buckets.get(key_id)
        if buckets is None or buckets.limits != (rpm, tpm):
            now = self._clock()
            buckets = _KeyBuckets(
                (rpm, tpm),
                TokenBucket(rpm, stamp=now) if rpm else None,
                TokenBucket(tpm, stamp=now) if tpm else None,
            )
            self._buckets[key_id] = buckets
            while len(self._buckets) > MAX_TRACKED_KEYS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key_id)
        return buckets

    def admit(self, key_id: str, rpm: int, tpm: int) -> None:
        """Count one request, or raise RateLimited with the seconds until one would be admitted."""
        buckets = self._for(key_id, rpm, tpm)
        now = self._clock()
        if buckets.tokens is not None:
            # Any token left admits a request: its cost is known only once it has run.
            wait = buckets.tokens.wait_s(1, now)
            if wait:
                raise RateLimited(
                    f"the API key is over its limit of {tpm} tokens per minute", retry_after(wait)
                )
        if buckets.requests is not None:
            wait = buckets.requests.wait_s(1, now)
            if wait:
                raise RateLimited(
                    f"the API key is over its limit of {rpm} requests per minute", retry_after(wait)
                )
            buckets.requests.take(1, now)

    def charge_tokens(self, key_id: str, tokens: int) -> None:
        buckets = self._buckets.get(key_id)
        if buckets is not None and buckets.tokens is not None and tokens > 0:
            buckets.tokens.take(tokens, self._clock())


class ConcurrencyLimit:
    """Generations in flight at once; one over the limit is refused at once, never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def acquire(self) -> None:
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"the gateway is at its limit of {self.limit} generations in flight; retry shortly",
                retry_after(1),
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

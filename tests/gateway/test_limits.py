"""Token buckets, per-key rate limits and the concurrency limit, on a clock the test moves by hand."""

from __future__ import annotations

import grpc
import pytest

from services.gateway.auth import limits
from services.gateway.auth.limits import (
    ConcurrencyLimit,
    FailureLimit,
    Overloaded,
    RateLimited,
    RateLimits,
    TokenBucket,
    retry_after,
)


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rates(clock: Clock) -> RateLimits:
    return RateLimits(clock=clock)


def refused(rates: RateLimits, key: str, rpm: int, tpm: int) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        rates.admit(key, rpm, tpm)
    return caught.value


# --- retry_after ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0, "1"), (1e-12, "1"), (0.4, "1"), (1.0, "1"), (1.0001, "2"), (20.0, "20"), (59.5, "60")],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(seconds: float, header: str) -> None:
    assert retry_after(seconds) == {"Retry-After": header}


# --- TokenBucket ------------------------------------------------------------------------------------


def test_a_new_bucket_holds_a_minutes_worth() -> None:
    bucket = TokenBucket(60, stamp=0.0)
    assert bucket.wait_s(60, 0.0) == 0.0
    assert bucket.wait_s(61, 0.0) == pytest.approx(1.0)


def test_an_empty_bucket_refills_at_its_rate_to_the_exact_edge() -> None:
    bucket = TokenBucket(60, stamp=0.0)
    bucket.take(60, 0.0)
    assert bucket.wait_s(1, 0.0) == 1.0
    assert bucket.wait_s(1, 0.5) == pytest.approx(0.5)
    assert bucket.wait_s(1, 0.999) == pytest.approx(0.001)
    assert bucket.wait_s(1, 1.0) == 0.0


def test_refill_is_proportional_to_the_time_passed() -> None:
    bucket = TokenBucket(120, stamp=0.0)
    bucket.take(120, 0.0)
    assert bucket.wait_s(30, 15.0) == 0.0  # 15 s of 2 per second
    assert bucket.wait_s(31, 15.0) == pytest.approx(0.5)


def test_refill_stops_at_a_minutes_worth_however_long_the_bucket_was_idle() -> None:
    bucket = TokenBucket(60, stamp=0.0)
    bucket.take(60, 0.0)
    assert bucket.wait_s(60, 3600.0) == 0.0
    assert bucket.wait_s(61, 3600.0) == pytest.approx(1.0)


def test_asking_repeatedly_at_one_moment_does_not_refill_twice() -> None:
    bucket = TokenBucket(60, stamp=0.0)
    bucket.take(60, 0.0)
    assert bucket.wait_s(10, 5.0) == pytest.approx(5.0)
    assert bucket.wait_s(10, 5.0) == pytest.approx(5.0)
    assert bucket.wait_s(10, 10.0) == 0.0


def test_a_charge_may_overdraw_and_the_debt_is_waited_out() -> None:
    bucket = TokenBucket(60, stamp=0.0)
    bucket.take(100, 0.0)  # 40 below empty
    assert bucket.wait_s(1, 0.0) == pytest.approx(41.0)
    assert bucket.wait_s(1, 40.0) == pytest.approx(1.0)
    assert bucket.wait_s(1, 41.0) == 0.0


# --- RateLimits -------------------------------------------------------------------------------------


def test_requests_per_minute_admits_a_burst_then_refuses_with_the_wait(rates: RateLimits) -> None:
    for _ in range(3):
        rates.admit("k", 3, 0)
    error = refused(rates, "k", 3, 0)
    assert (error.code, error.status) == ("rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert error.message == "the API key is over its limit of 3 requests per minute"
    assert error.headers == {"Retry-After": "20"}  # one request every 20 s


def test_a_request_is_admitted_exactly_when_its_unit_has_refilled(rates: RateLimits, clock: Clock) -> None:
    # 15 a minute is one every 4 s; the times are exact in binary, so the edge is exact too.
    for _ in range(15):
        rates.admit("k", 15, 0)
    clock.advance(3.75)
    assert refused(rates, "k", 15, 0).headers == {"Retry-After": "1"}
    clock.advance(0.25)
    rates.admit("k", 15, 0)
    assert refused(rates, "k", 15, 0).headers == {"Retry-After": "4"}


def test_a_refused_request_is_not_counted(rates: RateLimits, clock: Clock) -> None:
    rates.admit("k", 1, 0)
    for _ in range(5):
        refused(rates, "k", 1, 0)
    clock.advance(60)
    rates.admit("k", 1, 0)


def test_tokens_per_minute_admits_while_a_token_is_left(rates: RateLimits) -> None:
    rates.admit("k", 0, 100)
    rates.charge_tokens("k", 99)
    rates.admit("k", 0, 100)  # one token left
    rates.charge_tokens("k", 1)
    error = refused(rates, "k", 0, 100)
    assert error.message == "the API key is over its limit of 100 tokens per minute"
    assert error.headers == {"Retry-After": "1"}  # 0.6 s for one token


def test_an_overdrawn_token_bucket_refuses_until_the_debt_is_repaid(rates: RateLimits, clock: Clock) -> None:
    rates.admit("k", 0, 480)  # 8 tokens a second
    rates.charge_tokens("k", 1480)  # 1000 below empty
    assert refused(rates, "k", 0, 480).headers == {"Retry-After": "126"}  # 1001 tokens: 125.125 s
    clock.advance(125)
    assert refused(rates, "k", 0, 480).headers == {"Retry-After": "1"}
    clock.advance(0.125)
    rates.admit("k", 0, 480)


def test_a_request_refused_for_tokens_does_not_spend_a_request(rates: RateLimits, clock: Clock) -> None:
    rates.admit("k", 2, 60)
    rates.charge_tokens("k", 60)
    assert "tokens per minute" in refused(rates, "k", 2, 60).message
    assert "tokens per minute" in refused(rates, "k", 2, 60).message
    clock.advance(1)  # one token back; the request bucket has 1 of 2 plus 1/30 refilled
    rates.admit("k", 2, 60)
    assert "requests per minute" in refused(rates, "k", 2, 60).message


def test_limits_of_zero_are_unlimited(rates: RateLimits) -> None:
    for _ in range(10_000):
        rates.admit("k", 0, 0)
    rates.charge_tokens("k", 10**9)
    rates.admit("k", 0, 0)


@pytest.mark.parametrize("tokens", [0, -5])
def test_a_charge_of_no_tokens_changes_nothing(rates: RateLimits, tokens: int) -> None:
    rates.admit("k", 0, 1)
    rates.charge_tokens("k", tokens)
    rates.admit("k", 0, 1)  # the one token is still there


def test_charging_a_key_never_admitted_keeps_no_bucket_for_it(rates: RateLimits) -> None:
    rates.charge_tokens("stranger", 10**6)
    rates.admit("stranger", 0, 10)


def test_each_key_has_its_own_buckets(rates: RateLimits) -> None:
    rates.admit("a", 1, 0)
    refused(rates, "a", 1, 0)
    rates.admit("b", 1, 0)


def test_a_key_whose_limits_changed_gets_fresh_buckets(rates: RateLimits) -> None:
    rates.admit("k", 1, 0)
    refused(rates, "k", 1, 0)
    rates.admit("k", 2, 0)
    rates.admit("k", 2, 0)
    refused(rates, "k", 2, 0)


def test_the_least_recently_used_key_is_forgotten_beyond_the_tracked_maximum(
    rates: RateLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_TRACKED_KEYS", 2)
    rates.admit("a", 1, 0)
    rates.admit("b", 1, 0)
    refused(rates, "a", 1, 0)  # "a" is now the most recently used
    rates.admit("c", 1, 0)  # evicts "b"
    refused(rates, "a", 1, 0)
    rates.admit("b", 1, 0)  # forgotten, so refilled; evicts "c" (least recent after "a" was refused)
    rates.admit("c", 1, 0)


def test_a_new_keys_bucket_starts_full_on_the_injected_clock(clock: Clock) -> None:
    # Far behind time.monotonic(): a bucket stamped by the real clock would start deep in debt.
    clock.now = 5.0
    rates = RateLimits(clock=clock)
    for _ in range(60):
        rates.admit("k", 60, 0)
    assert refused(rates, "k", 60, 0).headers == {"Retry-After": "1"}
    clock.advance(1)
    rates.admit("k", 60, 0)


# --- ConcurrencyLimit -------------------------------------------------------------------------------


def test_generations_over_the_limit_are_refused_at_once() -> None:
    limit = ConcurrencyLimit(2)
    limit.acquire()
    limit.acquire()
    with pytest.raises(Overloaded) as caught:
        limit.acquire()
    error = caught.value
    assert (error.code, error.status) == ("overloaded", grpc.StatusCode.UNAVAILABLE)
    assert error.message == "the gateway is at its limit of 2 generations in flight; retry shortly"
    assert error.headers == {"Retry-After": "1"}
    assert limit.in_flight == 2


def test_a_released_slot_can_be_taken_again() -> None:
    limit = ConcurrencyLimit(1)
    limit.acquire()
    limit.release()
    assert limit.in_flight == 0
    limit.acquire()
    assert limit.in_flight == 1
    with pytest.raises(Overloaded):
        limit.acquire()


def test_failed_attempts_are_counted_per_client_and_refill_with_time() -> None:
    now = [0.0]
    failures = FailureLimit(2, clock=lambda: now[0])
    failures.check("10.0.0.1")  # no failure yet: never refused
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    with pytest.raises(RateLimited) as refused:
        failures.check("10.0.0.1")
    assert refused.value.headers == {"Retry-After": "30"}  # one attempt back in 60 s / 2
    failures.check("10.0.0.2")  # another address is not affected
    now[0] = 30.0
    failures.check("10.0.0.1")


def test_no_limit_on_failed_attempts_when_it_is_zero() -> None:
    failures = FailureLimit(0, clock=lambda: 0.0)
    for _ in range(100):
        failures.failed("10.0.0.1")
    failures.check("10.0.0.1")

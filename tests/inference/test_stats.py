"""A model's recent generations: what is counted, averaged, and forgotten once out of the window."""

from __future__ import annotations

import pytest

from services.inference.stats import MAX_KEPT, Ended, RecentGenerations


def test_a_model_with_no_generations_reports_only_its_requests() -> None:
    load = RecentGenerations().load("m", running=2, waiting=3, now=10.0)
    assert (load.running, load.waiting, load.generations, load.failures) == (2, 3, 0, 0)
    assert (load.mean_ttft_s, load.mean_latency_s, load.tokens_per_s) == (0.0, 0.0, 0.0)


def test_successes_are_averaged_and_failures_only_counted() -> None:
    recent = RecentGenerations(window_s=60)
    recent.record("m", Ended(at=1.0, ok=True, ttft_s=0.1, latency_s=1.0, completion_tokens=10))
    recent.record("m", Ended(at=2.0, ok=True, ttft_s=0.3, latency_s=3.0, completion_tokens=50))
    recent.record("m", Ended(at=3.0, ok=False, ttft_s=0.0, latency_s=9.0, completion_tokens=0))
    recent.record("other", Ended(at=3.0, ok=True, ttft_s=5.0, latency_s=5.0, completion_tokens=1))
    load = recent.load("m", running=0, waiting=0, now=4.0)
    assert (load.generations, load.failures, load.window_s) == (3, 1, 60)
    assert load.mean_ttft_s == pytest.approx(0.2)
    assert load.mean_latency_s == pytest.approx(2.0)
    assert load.tokens_per_s == pytest.approx(15.0)  # 60 tokens in 4 s of generating


def test_generations_older_than_the_window_are_forgotten() -> None:
    recent = RecentGenerations(window_s=60)
    recent.record("m", Ended(at=0.0, ok=True, ttft_s=1.0, latency_s=1.0, completion_tokens=1))
    recent.record("m", Ended(at=50.0, ok=True, ttft_s=2.0, latency_s=2.0, completion_tokens=4))
    load = recent.load("m", running=0, waiting=0, now=100.0)
    assert (load.generations, load.mean_latency_s, load.tokens_per_s) == (1, 2.0, 2.0)


def test_at_most_max_kept_generations_are_kept_per_model() -> None:
    recent = RecentGenerations(window_s=1e9)
    for n in range(MAX_KEPT + 10):
        recent.record("m", Ended(at=float(n), ok=True, ttft_s=0.0, latency_s=1.0, completion_tokens=1))
    assert recent.load("m", running=0, waiting=0, now=float(MAX_KEPT + 10)).generations == MAX_KEPT

"""The orchestrator's metrics: generations as callers see them (by route, model, tier and outcome,
with latency and tokens), fallbacks, the session-result cache, and this replica's job worker."""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

from llmmesh.common.v1 import common_pb2
from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

GENERATIONS = Counter(
    "llmmesh_generations_total",
    "Generations by route, the model that served (or last failed) and its tier, and outcome "
    "(ok, cancelled, or the error code).",
    ["route", "model", "tier", "outcome"],
)
FALLBACKS = Counter(
    "llmmesh_generation_fallbacks_total",
    "Times a route's tier failed before any output and the next tier was tried.",
    ["route", "model"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "llmmesh_generation_time_to_first_token_seconds",
    "From the request reaching the orchestrator to the first text of a streamed generation.",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "llmmesh_generation_time_per_output_token_seconds",
    "Mean time between output tokens after the first, one observation per streamed generation.",
    ["model"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1),
)
DURATION = Histogram(
    "llmmesh_generation_duration_seconds",
    "From the request reaching the orchestrator to its result (retries and fallbacks included).",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
PROMPT_TOKENS = Counter(
    "llmmesh_generation_prompt_tokens_total", "Prompt tokens of served generations.", ["model"]
)
COMPLETION_TOKENS = Counter(
    "llmmesh_generation_completion_tokens_total", "Completion tokens of served generations.", ["model"]
)
SESSION_RESULTS = Counter(
    "llmmesh_session_results_total",
    "Session runs by cache: hit (the stored result was reused), miss (generated), bypass (force_regenerate).",
    ["cache"],
)
CACHE_HIT, CACHE_MISS, CACHE_BYPASS = (SESSION_RESULTS.labels(cache) for cache in ("hit", "miss", "bypass"))
JOB_ATTEMPTS = Counter(
    "llmmesh_job_attempts_total",
    "Job attempts this replica finished, by outcome: succeeded, retried (failed, will run again), "
    "failed (for good), interrupted (lease lost or shutdown; another attempt may follow).",
    ["kind", "outcome"],
)
JOB_ATTEMPTS_USED = Histogram(
    "llmmesh_job_attempts_per_job",
    "Attempts a job had used when it ended here (succeeded or failed for good).",
    ["kind"],
    buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20),
)
JOBS_RUNNING = Gauge("llmmesh_jobs_running", "Jobs this replica's worker is running now.", ["kind"])


class _ModelChildren(NamedTuple):
    ttft: Any
    tpot: Any
    duration: Any
    prompt_tokens: Any
    completion_tokens: Any


@functools.lru_cache(maxsize=1024)
def _for_model(model: str) -> _ModelChildren:
    return _ModelChildren(
        TIME_TO_FIRST_TOKEN.labels(model),
        TIME_PER_OUTPUT_TOKEN.labels(model),
        DURATION.labels(model),
        PROMPT_TOKENS.labels(model),
        COMPLETION_TOKENS.labels(model),
    )


@functools.lru_cache(maxsize=4096)
def _generations(route: str, model: str, tier: str, outcome: str) -> Any:
    return GENERATIONS.labels(route, model, tier, outcome)


class GenerationMeter:
    """Records one generation once: its outcome, latency and tokens. Time to first token and per output
    token are recorded for streamed generations only: a one-shot call to a provider sees its whole text
    arrive at once, which would read as a slow first token and free later ones."""

    __slots__ = ("_done", "_first_token_at", "_started", "_streamed", "model", "route", "tier")

    def __init__(self, route: str, streamed: bool) -> None:
        self.route = route
        self._streamed = streamed
        self.model = ""
        self.tier = ""
        self._started = time.perf_counter()
        self._first_token_at = 0.0
        self._done = False

    def attempting(self, model: str, tier: int) -> None:
        self.model, self.tier = model, str(tier)

    def fell_back(self) -> None:
        FALLBACKS.labels(self.route, self.model).inc()

    def token(self) -> None:
        if self._streamed and not self._first_token_at:
            self._first_token_at = time.perf_counter()
            _for_model(self.model).ttft.observe(self._first_token_at - self._started)

    def finished(self, result: common_pb2.GenerationResult) -> None:
        if self._done:
            return
        self._done = True
        now = time.perf_counter()
        _generations(self.route, result.model, self.tier, "ok").inc()
        children = _for_model(result.model)
        children.duration.observe(now - self._started)
        usage = result.usage
        if usage.prompt_tokens:
            children.prompt_tokens.inc(usage.prompt_tokens)
        if usage.completion_tokens:
            children.completion_tokens.inc(usage.completion_tokens)
            if self._first_token_at and usage.completion_tokens > 1:
                children.tpot.observe((now - self._first_token_at) / (usage.completion_tokens - 1))

    def failed(self, outcome: str) -> None:
        if self._done:
            return
        self._done = True
        _generations(self.route, self.model, self.tier, outcome).inc()

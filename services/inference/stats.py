"""Each model's recent generations, kept in memory for a few minutes: how many ended, how many
failed, time to first token, latency and throughput. What ListModels reports as a model's load,
so an operator sees what a pool did lately without a metrics stack."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from llmmesh.common.v1 import common_pb2

# How far back a model's figures reach, and the most generations kept per model within that.
WINDOW_S = 300.0
MAX_KEPT = 1024


@dataclass(frozen=True)
class Ended:
    """One generation that ended: when, whether it succeeded, and its timings and tokens."""

    at: float
    ok: bool
    ttft_s: float
    latency_s: float
    completion_tokens: int


class RecentGenerations:
    """The generations of each model that ended in the last WINDOW_S seconds (at most MAX_KEPT)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._ended: dict[str, deque[Ended]] = {}

    def record(self, model: str, ended: Ended) -> None:
        self._ended.setdefault(model, deque(maxlen=MAX_KEPT)).append(ended)

    def load(self, model: str, running: int, waiting: int, now: float | None = None) -> common_pb2.ModelLoad:
        """The model's load: `running` and `waiting` as its host counts them, and its recent figures."""
        now = time.monotonic() if now is None else now
        kept = self._ended.get(model, deque())
        while kept and kept[0].at < now - self._window_s:
            kept.popleft()
        done = [e for e in kept if e.ok]
        busy_s = sum(e.latency_s for e in done)
        return common_pb2.ModelLoad(
            running=running,
            waiting=waiting,
            window_s=self._window_s,
            generations=len(kept),
            failures=len(kept) - len(done),
            mean_ttft_s=sum(e.ttft_s for e in done) / len(done) if done else 0.0,
            mean_latency_s=busy_s / len(done) if done else 0.0,
            tokens_per_s=sum(e.completion_tokens for e in done) / busy_s if busy_s else 0.0,
        )

"""The store's metrics: the job queue's depth by kind and status, the age of the oldest claimable job,
and stalled pipeline runs. Counted by a query when Prometheus scrapes (on the store's event loop,
from the metrics thread), so an unscraped store does no extra work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.store.queue import JobQueue

log = logging.getLogger("llmmesh.store.metrics")

# A scrape waits at most this long for the counts; Prometheus's own timeout is 10 s by default.
STATS_TIMEOUT_S = 5.0
KNOWN_KINDS = ("generate", "session", "pipeline_step", "webhook", "ingest")


class QueueCollector(Collector):
    def __init__(self) -> None:
        self._queue: tuple[JobQueue, asyncio.AbstractEventLoop, float] | None = None

    def track(self, queue: JobQueue, loop: asyncio.AbstractEventLoop, stall_s: float) -> None:
        self._queue = (queue, loop, stall_s)

    def untrack(self, queue: JobQueue) -> None:
        if self._queue is not None and self._queue[0] is queue:
            self._queue = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._queue is None:
            return
        queue, loop, stall_s = self._queue
        try:
            asking = asyncio.get_running_loop()
        except RuntimeError:
            asking = None
        if loop.is_closed() or asking is loop:
            return  # asked from inside the loop itself, where waiting on it would hang it
        try:
            stats = asyncio.run_coroutine_threadsafe(queue.stats(stall_s), loop).result(STATS_TIMEOUT_S)
        except Exception:
            log.warning("cannot count the job queue for metrics", exc_info=True)
            return
        jobs = GaugeMetricFamily(
            "llmmesh_jobs", "Jobs queued or running now, by kind and status.", labels=["kind", "status"]
        )
        # Every known kind is reported, zeros too, so a drained queue reads 0 rather than vanishing.
        kinds = sorted({*KNOWN_KINDS, *(kind for kind, _ in stats.jobs)})
        for status in ("QUEUED", "RUNNING"):
            for kind in kinds:
                jobs.add_metric([kind, status.lower()], stats.jobs.get((kind, status), 0))
        yield jobs
        yield GaugeMetricFamily(
            "llmmesh_jobs_oldest_queued_seconds",
            "How long the oldest claimable job has waited (0 when none waits).",
            value=stats.oldest_queued_s,
        )
        yield GaugeMetricFamily(
            "llmmesh_pipeline_runs_stalled",
            "Pipeline runs RUNNING with no step finished for longer than PIPELINE_STALL_S.",
            value=stats.stalled_runs,
        )


QUEUE = QueueCollector()
REGISTRY.register(QUEUE)

"""Job queue benchmark: no-op jobs claimed and completed per second, and enqueue-to-start latency.

The store runs as its own process on PostgreSQL (a scratch database, created and dropped here);
the orchestrator's real JobWorker runs in this process with a job that does nothing, so what is
measured is the queue itself: claim, lease, complete, wake-up, over gRPC and SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2
from sqlalchemy.engine import make_url

from bench.mesh import free_port, scratch_database
from bench.report import (
    SPREAD_HEADER,
    Part,
    add_output_options,
    machine,
    output_dir,
    percentile,
    spread,
    write_report,
)
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.worker import JobOutcome, JobWorker
from services.store.client import StoreClient

# The benchmark's worker runs every job as a no-op, whatever its kind says.
NOOP = common_pb2.JOB_KIND_GENERATE


class StoreProcess:
    """The store as its own process on database_url, on a free loopback port."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> StoreClient:
        env = dict(
            os.environ,
            LOG_LEVEL="WARNING",
            STORE_PORT=str(self.port),
            STORE_DATABASE_URL=self.database_url,
        )
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "serve", "store", env=env
        )
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        health = health_pb2_grpc.HealthStub(self.channel)
        for _ in range(300):
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return StoreClient(self.channel)
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("the store did not start")

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


def _settings(concurrency: int) -> OrchestratorSettings:
    return OrchestratorSettings(
        job_concurrency=concurrency, job_poll_s=1.0, job_lease_s=30, job_heartbeat_s=10
    )


async def _enqueue(store: StoreClient, count: int, parallel: int = 32) -> float:
    """Queue `count` no-op jobs from `parallel` callers; returns jobs/s."""
    started = time.perf_counter()

    async def caller(share: int) -> None:
        for _ in range(share):
            await store.enqueue_job(
                store_pb2.EnqueueJobRequest(job=store_pb2.NewJob(kind=NOOP, request_json="{}"))
            )

    await asyncio.gather(*(caller(count // parallel + (i < count % parallel)) for i in range(parallel)))
    return count / (time.perf_counter() - started)


async def throughput(store: StoreClient, jobs: int, concurrency: int) -> dict[str, float]:
    """Queue `jobs`, then time one worker draining them: claimed, run (no-op), completed."""
    enqueue_rate = await _enqueue(store, jobs)
    executed = 0
    all_ran = asyncio.Event()

    async def noop(job: store_pb2.Job) -> JobOutcome:
        nonlocal executed
        executed += 1
        if executed == jobs:
            all_ran.set()
        return JobOutcome({})

    worker = JobWorker(store, noop, _settings(concurrency))
    started = time.perf_counter()
    worker.start()
    await all_ran.wait()
    for _ in range(10_000):  # and every completion recorded
        if not worker.running:
            break
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await worker.stop()
    return {"enqueue_per_s": enqueue_rate, "jobs_per_s": jobs / elapsed}


async def latency(store: StoreClient, samples: int, concurrency: int) -> list[float]:
    """Seconds from the enqueue call to the worker starting the job, one job at a time, idle worker."""
    started: dict[str, float] = {}
    arrived = asyncio.Event()

    async def noop(job: store_pb2.Job) -> JobOutcome:
        started[job.id] = time.perf_counter()
        arrived.set()
        return JobOutcome({})

    worker = JobWorker(store, noop, _settings(concurrency))
    worker.start()
    await asyncio.sleep(0.5)  # the worker has claimed nothing and waits on the store's wake-ups
    delays = []
    for _ in range(samples):
        arrived.clear()
        sent = time.perf_counter()
        response = await store.enqueue_job(
            store_pb2.EnqueueJobRequest(job=store_pb2.NewJob(kind=NOOP, request_json="{}"))
        )
        await asyncio.wait_for(arrived.wait(), 5)
        delays.append(started[response.job.id] - sent)
        await asyncio.sleep(0.01)
    await worker.stop()
    return delays


async def _measure(
    database_url: str, jobs: int, repeats: int, concurrency: int, samples: int
) -> tuple[list[dict[str, float]], list[float]]:
    rates: list[dict[str, float]] = []
    async with StoreProcess(database_url) as store:
        await throughput(store, 500, concurrency)  # warm-up: connections, caches
        for _ in range(repeats):
            rates.append(await throughput(store, jobs, concurrency))
        delays = await latency(store, samples, concurrency)
    return rates, delays


def measure(
    postgres_url: str, jobs: int = 5000, repeats: int = 3, concurrency: int = 64, samples: int = 300
) -> Part:
    with scratch_database(postgres_url) as database_url:
        rates, delays = asyncio.run(_measure(database_url, jobs, repeats, concurrency, samples))
    per_s = [r["jobs_per_s"] for r in rates]
    enq = [r["enqueue_per_s"] for r in rates]
    lines = [
        "# Job queue on PostgreSQL",
        "",
        f"Machine: {machine()}; PostgreSQL at {make_url(postgres_url).host}:{make_url(postgres_url).port}.",
        "",
        "The store is its own process on a scratch PostgreSQL database; the orchestrator's JobWorker runs in "
        f"the benchmark process with {concurrency} slots and a job that does nothing, so the figures are the "
        "queue's own cost: claim (UPDATE … SKIP LOCKED … RETURNING), run, completion, wake-up.",
        "",
        "Command: `.venv/bin/python -m bench` (this part alone: "
        f"`.venv/bin/python -m bench.queue --postgres-url {postgres_url} --jobs {jobs} --repeats {repeats}`)",
        "",
        f"## Throughput ({jobs} queued no-op jobs drained, {repeats} runs after a warm-up)",
        "",
        "| figure | median | min | max |",
        "|---|---:|---:|---:|",
        f"| jobs claimed + completed / s | {statistics.median(per_s):.0f} | {min(per_s):.0f} | {max(per_s):.0f} |",
        f"| jobs enqueued / s (32 callers) | {statistics.median(enq):.0f} | {min(enq):.0f} | {max(enq):.0f} |",
        "",
        f"## Enqueue-to-start latency ({samples} jobs, one at a time, idle worker)",
        "",
        f"| latency ms {SPREAD_HEADER} |",
        "|---:|---:|---:|---:|",
        f"| {spread(delays, 1e3)} |",
    ]
    figures = {
        "jobs_per_s": statistics.median(per_s),
        "enqueue_per_s": statistics.median(enq),
        "start_ms_p50": statistics.median(delays) * 1e3,
        "start_ms_p99": percentile(delays, 0.99) * 1e3,
    }
    return Part("queue", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--samples", type=int, default=300)
    add_output_options(parser)
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error(
            "give --postgres-url (or set LLM_MESH_TEST_POSTGRES_URL): the queue benchmark runs on PostgreSQL"
        )
    part = measure(args.postgres_url, args.jobs, args.repeats, args.concurrency, args.samples)
    write_report(output_dir(args) / "queue.md", part.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

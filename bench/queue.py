"""Job queue benchmark: no-op jobs claimed and completed per second, and enqueue-to-start latency.

The store runs as its own process on PostgreSQL (a scratch database, created and dropped here);
the orchestrator's real JobWorker runs in this process with a job that does nothing, so what is
measured is the queue itself: claim, lease, complete, wake-up, over gRPC and SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmmesh.v1 import store_pb2, store_pb2_grpc
from sqlalchemy.engine import make_url

from bench.mesh import free_port
from bench.report import percentile, write_report
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.store import StoreClient
from services.orchestrator.worker import JobOutcome, JobWorker


def _dsn(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


class ScratchStore:
    """A store process on a new PostgreSQL database, dropped on close."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.database = f"llmmesh_bench_{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> store_pb2_grpc.StoreServiceStub:
        admin = await asyncpg.connect(_dsn(self.server_url, make_url(self.server_url).database or "postgres"))
        await admin.execute(f'CREATE DATABASE "{self.database}"')
        await admin.close()
        env = dict(
            os.environ,
            LOG_LEVEL="WARNING",
            STORE_PORT=str(self.port),
            STORE_DATABASE_URL=make_url(self.server_url).set(database=self.database).render_as_string(False),
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
                    return store_pb2_grpc.StoreServiceStub(self.channel)
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("the store did not start")

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)
        admin = await asyncpg.connect(_dsn(self.server_url, make_url(self.server_url).database or "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        await admin.close()


def _settings(concurrency: int) -> OrchestratorSettings:
    return OrchestratorSettings(
        job_concurrency=concurrency, job_poll_s=1.0, job_lease_s=30, job_heartbeat_s=10
    )


async def _enqueue(store: store_pb2_grpc.StoreServiceStub, count: int, parallel: int = 32) -> float:
    """Queue `count` no-op jobs from `parallel` callers; returns jobs/s."""
    started = time.perf_counter()

    async def caller(share: int) -> None:
        for _ in range(share):
            await store.EnqueueJob(
                store_pb2.EnqueueJobRequest(job=store_pb2.NewJob(kind="noop", request_json="{}"))
            )

    await asyncio.gather(*(caller(count // parallel + (i < count % parallel)) for i in range(parallel)))
    return count / (time.perf_counter() - started)


async def throughput(store: store_pb2_grpc.StoreServiceStub, jobs: int, concurrency: int) -> dict[str, float]:
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

    worker = JobWorker(StoreClient(store), noop, _settings(concurrency))
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


async def latency(store: store_pb2_grpc.StoreServiceStub, samples: int, concurrency: int) -> list[float]:
    """Seconds from the enqueue call to the worker starting the job, one job at a time, idle worker."""
    started: dict[str, float] = {}
    arrived = asyncio.Event()

    async def noop(job: store_pb2.Job) -> JobOutcome:
        started[job.id] = time.perf_counter()
        arrived.set()
        return JobOutcome({})

    worker = JobWorker(StoreClient(store), noop, _settings(concurrency))
    worker.start()
    await asyncio.sleep(0.5)  # the worker has claimed nothing and waits on the store's wake-ups
    delays = []
    for _ in range(samples):
        arrived.clear()
        sent = time.perf_counter()
        response = await store.EnqueueJob(
            store_pb2.EnqueueJobRequest(job=store_pb2.NewJob(kind="noop", request_json="{}"))
        )
        await asyncio.wait_for(arrived.wait(), 5)
        delays.append(started[response.job.id] - sent)
        await asyncio.sleep(0.01)
    await worker.stop()
    return delays


async def run(args: argparse.Namespace) -> list[str]:
    rates: list[dict[str, float]] = []
    async with ScratchStore(args.postgres_url) as store:
        await throughput(store, 500, args.concurrency)  # warm-up: connections, caches, JIT-free paths
        for _ in range(args.repeats):
            rates.append(await throughput(store, args.jobs, args.concurrency))
        delays = await latency(store, args.samples, args.concurrency)
    per_s = [r["jobs_per_s"] for r in rates]
    enq = [r["enqueue_per_s"] for r in rates]
    ms = [d * 1e3 for d in delays]
    return [
        "# Job queue on PostgreSQL",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. The store is its own process on PostgreSQL "
        f"({args.postgres_url.split('@')[-1]}); the orchestrator's JobWorker runs in the benchmark "
        f"process with {args.concurrency} slots and a job that does nothing, so the figures are the "
        "queue's own cost: claim (UPDATE … SKIP LOCKED … RETURNING), run, CompleteJob, wake-up.",
        "",
        f"Command: `.venv/bin/python -m bench.queue --postgres-url {args.postgres_url} "
        f"--jobs {args.jobs} --repeats {args.repeats}`",
        "",
        f"## Throughput ({args.jobs} queued no-op jobs drained, {args.repeats} runs after a warm-up)",
        "",
        "| figure | median | min | max |",
        "|---|---:|---:|---:|",
        f"| jobs claimed + completed / s | {statistics.median(per_s):.0f} | {min(per_s):.0f} | {max(per_s):.0f} |",
        f"| jobs enqueued / s (32 callers) | {statistics.median(enq):.0f} | {min(enq):.0f} | {max(enq):.0f} |",
        "",
        f"## Enqueue-to-start latency ({args.samples} jobs, one at a time, idle worker)",
        "",
        "| median ms | p99 ms | min ms | max ms |",
        "|---:|---:|---:|---:|",
        f"| {statistics.median(ms):.2f} | {percentile(ms, 0.99):.2f} | {min(ms):.2f} | {max(ms):.2f} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/queue.md"))
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error(
            "give --postgres-url (or set LLM_MESH_TEST_POSTGRES_URL): the queue benchmark runs on PostgreSQL"
        )
    write_report(args.out, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

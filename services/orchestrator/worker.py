"""The job worker: claims jobs from the store's queue, runs them, and records how they ended.

Every orchestrator replica runs one. It claims as many jobs as it has free slots, woken by the
store's WatchJobs stream when jobs are queued (with a slow poll as a backstop for retries coming
due), renews the leases of the jobs it runs, and stops a job whose lease it lost (the job was
cancelled, or another replica took it over after this one stalled). On shutdown it stops claiming,
lets running jobs finish within a grace period and gives the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from llmmesh.v1 import store_pb2

from services.common.errors import MeshError, from_rpc_error
from services.common.request_id import bound_request_id
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.metrics import JOB_ATTEMPTS, JOB_ATTEMPTS_USED, JOBS_RUNNING
from services.orchestrator.store import StoreClient

log = logging.getLogger("llmmesh.orchestrator.worker")

# Errors that another attempt cannot fix: the request itself is wrong or refused.
_PERMANENT_STATUSES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
_PERMANENT_CODES = frozenset({"upstream_auth_failed", "upstream_bad_request"})


@dataclass(frozen=True)
class JobOutcome:
    """What a job produced, and for a pipeline step the next step to queue with it."""

    result: dict[str, Any]
    next_step: store_pb2.NewJob | None = None


Execute = Callable[[store_pb2.Job], Awaitable[JobOutcome]]


def retryable(error: MeshError) -> bool:
    return error.status not in _PERMANENT_STATUSES and error.code not in _PERMANENT_CODES


def _lease(job: store_pb2.Job) -> store_pb2.JobLease:
    return store_pb2.JobLease(job_id=job.id, lease_token=job.lease_token)


@dataclass
class _Running:
    job: store_pb2.Job
    task: asyncio.Task[None]


class JobWorker:
    """Runs queued jobs with `execute`, at most `settings.job_concurrency` at a time."""

    def __init__(self, store: StoreClient, execute: Execute, settings: OrchestratorSettings) -> None:
        self._store = store
        self._execute = execute
        self._settings = settings
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._running: dict[str, _Running] = {}
        self._nudge = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self) -> None:
        if self._settings.job_concurrency == 0:
            return
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="jobs-claim"),
            asyncio.create_task(self._watch_loop(), name="jobs-watch"),
            asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat"),
        ]

    async def stop(self) -> None:
        """Stop claiming, give running jobs the grace period, release what is still running."""
        if not self._loops:
            return
        self._stopping.set()
        self._nudge.set()
        claim, watch, heartbeat = self._loops
        watch.cancel()
        await asyncio.gather(claim, watch, return_exceptions=True)
        tasks = [running.task for running in self._running.values()]
        if tasks:
            log.info("waiting for running jobs", extra={"jobs": len(tasks)})
            await asyncio.wait(tasks, timeout=self._settings.job_shutdown_grace_s)
        unfinished = list(self._running.values())
        for running in unfinished:
            running.task.cancel()
        await asyncio.gather(*(running.task for running in unfinished), return_exceptions=True)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self._release([_lease(running.job) for running in unfinished])

    async def _release(self, leases: list[store_pb2.JobLease]) -> None:
        """Hand jobs back for another worker, uncounted; if the store cannot hear it, leases expire."""
        if not leases:
            return
        try:
            await self._store.call("ReleaseJobs", store_pb2.ReleaseJobsRequest(leases=leases))
            log.info("released unfinished jobs", extra={"jobs": len(leases)})
        except MeshError as error:
            log.warning(
                "could not release unfinished jobs; their leases will expire",
                extra={"jobs": len(leases), "code": error.code},
            )

    async def _pause(self, seconds: float) -> None:
        """Sleep until nudged or seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), seconds)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self._settings.job_concurrency - len(self._running)
            self._nudge.clear()
            if free <= 0:
                await self._pause(self._settings.job_poll_s)
                continue
            try:
                response = await self._store.call(
                    "ClaimJobs",
                    store_pb2.ClaimJobsRequest(
                        worker=self.name, limit=free, lease_s=self._settings.job_lease_s
                    ),
                )
            except MeshError as error:
                failures += 1
                log.warning("cannot claim jobs", extra={"code": error.code, "failures": failures})
                await self._pause(min(5.0, 0.2 * 2**failures))  # a stop cuts the wait short
                continue
            failures = 0
            if self._stopping.is_set():  # claimed while shutdown began: give them straight back
                await self._release([_lease(job) for job in response.jobs])
                return
            for job in response.jobs:
                self._running[job.id] = _Running(
                    job, asyncio.create_task(self._run(job), name=f"job-{job.id}")
                )
            if len(response.jobs) < free:  # the queue is drained for now
                await self._pause(self._settings.job_poll_s)

    async def _watch_loop(self) -> None:
        """Nudge the claim loop whenever the store says jobs were queued; reconnect when it goes."""
        while not self._stopping.is_set():
            try:
                async for _ in self._store.stub.WatchJobs(store_pb2.WatchJobsRequest()):
                    self._nudge.set()
            except grpc.aio.AioRpcError as exc:
                log.debug("job watch stream ended", extra={"status": exc.code().name})
            await asyncio.sleep(1.0)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.job_heartbeat_s)
            running = list(self._running.values())
            if not running:
                continue
            try:
                response = await self._store.call(
                    "RenewLeases",
                    store_pb2.RenewLeasesRequest(
                        leases=[_lease(r.job) for r in running], lease_s=self._settings.job_lease_s
                    ),
                )
            except MeshError as error:
                log.warning("cannot renew job leases", extra={"code": error.code})
                continue
            held = set(response.held_job_ids)
            for lost in running:
                if lost.job.id not in held and self._running.get(lost.job.id) is lost:
                    log.info(
                        "job lease lost (cancelled or taken over); stopping it", extra={"job_id": lost.job.id}
                    )
                    lost.task.cancel()

    async def _run(self, job: store_pb2.Job) -> None:
        lease = _lease(job)
        running = JOBS_RUNNING.labels(job.kind)
        running.inc()
        try:
            with bound_request_id(f"job-{job.id}"):
                try:
                    outcome = await self._execute(job)
                except asyncio.CancelledError:
                    JOB_ATTEMPTS.labels(job.kind, "interrupted").inc()
                    raise
                except MeshError as error:
                    await self._fail(job, lease, error)
                except grpc.aio.AioRpcError as exc:
                    await self._fail(job, lease, from_rpc_error(exc))
                except Exception:
                    log.exception("job failed unexpectedly", extra={"job_id": job.id, "kind": job.kind})
                    await self._fail(job, lease, MeshError("internal error"))
                else:
                    JOB_ATTEMPTS.labels(job.kind, "succeeded").inc()
                    JOB_ATTEMPTS_USED.labels(job.kind).observe(job.attempts)
                    await self._record(
                        "CompleteJob",
                        store_pb2.CompleteJobRequest(
                            request_id=f"job-{job.id}",
                            lease=lease,
                            result_json=json.dumps(outcome.result),
                            next_step=outcome.next_step,
                        ),
                    )
        finally:
            running.dec()
            self._running.pop(job.id, None)
            self._nudge.set()

    async def _fail(self, job: store_pb2.Job, lease: store_pb2.JobLease, error: MeshError) -> None:
        again = retryable(error) and job.attempts < job.max_attempts
        JOB_ATTEMPTS.labels(job.kind, "retried" if again else "failed").inc()
        if not again:
            JOB_ATTEMPTS_USED.labels(job.kind).observe(job.attempts)
        log.warning(
            "job attempt failed",
            extra={
                "job_id": job.id,
                "kind": job.kind,
                "attempt": job.attempts,
                "code": error.code,
                "retry": again,
            },
        )
        await self._record(
            "FailJob",
            store_pb2.FailJobRequest(
                request_id=f"job-{job.id}",
                lease=lease,
                error=store_pb2.JobError(code=error.code, message=error.message),
                retry_after_s=self._backoff(job.attempts) if again else None,
            ),
        )

    def _backoff(self, attempt: int) -> float:
        settings = self._settings
        ceiling = min(settings.job_retry_max_backoff_s, settings.job_retry_backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _record(self, method: str, request: Any) -> None:
        """Tell the store how a job ended, retrying while it is unreachable; if it never answers,
        the lease lapses and the job runs again (at least once, never lost)."""
        for attempt in range(1, 6):
            try:
                await self._store.call(method, request)
                return
            except MeshError as error:
                if error.status not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.error(
                        "store refused a job outcome", extra={"code": error.code, "message": error.message}
                    )
                    return
                await asyncio.sleep(0.2 * 2**attempt)
        log.error(
            "could not record a job outcome; the job will run again", extra={"job_id": request.lease.job_id}
        )

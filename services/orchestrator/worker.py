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
import functools
import json
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2

from services.common.enums import JOB_KIND_NAMES
from services.common.errors import MeshError
from services.common.request_id import bound_request_id
from services.common.tenancy import DEFAULT_PROJECT, bound_project
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.metrics import JOB_ATTEMPTS, JOB_ATTEMPTS_USED, JOBS_RUNNING
from services.store.client import StoreClient

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
# Recording a job's outcome while the store is unreachable: retried from RECORD_BACKOFF_S, doubling up
# to RECORD_MAX_BACKOFF_S, so it lands within a couple of seconds of the store's return.
RECORD_BACKOFF_S = 0.1
RECORD_MAX_BACKOFF_S = 2.0
RECORD_WARN_AFTER = 5
# The shortest sleep before a claim the store said falls due: its clock has moved on by then.
MIN_PAUSE_S = 0.01


@dataclass(frozen=True)
class JobOutcome:
    """What a job produced, and for a pipeline step the next step to queue with it."""

    result: dict[str, Any]
    next_step: store_pb2.NewJob | None = None


Execute = Callable[[store_pb2.Job], Awaitable[JobOutcome]]
# Sends one outcome to the store, retried while it is unreachable; None when it was not recorded.
Record = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]


def retryable(error: MeshError) -> bool:
    return error.status not in _PERMANENT_STATUSES and error.code not in _PERMANENT_CODES


def _lease(job: store_pb2.Job) -> store_pb2.JobLease:
    return store_pb2.JobLease(job_id=job.id, lease_token=job.lease_token)


class _Completions:
    """Reports job results to the store in batches: a result waits only while the batch before it is
    in flight, so one job alone is sent at once and many finishing together share one call and one
    transaction (the store's CompleteJobs)."""

    MAX_BATCH = 256

    def __init__(self, store: StoreClient, record: Record) -> None:
        self._store = store
        self._record = record
        self._pending: list[tuple[store_pb2.JobCompletion, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def complete(self, request: store_pb2.JobCompletion) -> None:
        """Returns once the batch holding request was answered (or given up on: see JobWorker._record)."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((request, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="jobs-complete")
        await asyncio.shield(done)  # a cancelled job's result is still sent with its batch

    async def _send(self) -> None:
        # Not the request id or project of whichever job happened to start the task: a batch holds
        # the jobs of any project (the store completes them by lease).
        with bound_request_id("job-results"), bound_project(DEFAULT_PROJECT):
            await self._send_pending()

    async def _send_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.MAX_BATCH], self._pending[self.MAX_BATCH :]
            try:
                request = store_pb2.CompleteJobsRequest(completions=[completion for completion, _ in batch])
                response = await self._record(
                    functools.partial(self._store.complete_jobs, request), f"{len(batch)} job results"
                )
                if response is not None and response.rejected_job_ids:
                    log.error("store refused job results", extra={"job_ids": list(response.rejected_job_ids)})
            finally:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def drain(self) -> None:
        """Wait for results already handed over to be sent (on shutdown)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)


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
        self._completions = _Completions(store, self._record)

    @property
    def running(self) -> int:
        return len(self._running)

    def _batch_room(self) -> int:
        """How many more batch lines this worker may run now, within its batch share."""
        settings = self._settings
        share = max(1, int(settings.job_concurrency * settings.job_batch_share))
        return max(0, share - sum(1 for r in self._running.values() if r.job.batch_id))

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
        await self._completions.drain()
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self._release([_lease(running.job) for running in unfinished])

    async def _release(self, leases: list[store_pb2.JobLease]) -> None:
        """Hand jobs back for another worker, uncounted; if the store cannot hear it, leases expire."""
        if not leases:
            return
        try:
            await self._store.release_jobs(store_pb2.ReleaseJobsRequest(leases=leases))
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

    def _until_due(self, response: store_pb2.ClaimJobsResponse) -> float:
        """How long a drained claim loop sleeps: until the store's next due job (a retry, an expired
        lease, a batch window), at most job_poll_s; new jobs and finished ones wake it sooner."""
        if not response.HasField("next_due_s"):
            return self._settings.job_poll_s
        return min(max(response.next_due_s, MIN_PAUSE_S), self._settings.job_poll_s)

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self._settings.job_concurrency - len(self._running)
            self._nudge.clear()
            if free <= 0:
                await self._pause(self._settings.job_poll_s)
                continue
            try:
                response = await self._store.claim_jobs(
                    store_pb2.ClaimJobsRequest(
                        worker=self.name,
                        limit=free,
                        lease_s=self._settings.job_lease_s,
                        batch_limit=self._batch_room(),
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
                await self._pause(self._until_due(response))

    async def _watch_loop(self) -> None:
        """Nudge the claim loop whenever the store says jobs were queued; reconnect when it goes."""
        while not self._stopping.is_set():
            try:
                async for _ in self._store.watch_jobs(store_pb2.WatchJobsRequest(), timeout_s=None):
                    self._nudge.set()
            except MeshError as error:
                log.debug("job watch stream ended", extra={"code": error.code})
            await asyncio.sleep(1.0)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.job_heartbeat_s)
            running = list(self._running.values())
            if not running:
                continue
            try:
                response = await self._store.renew_leases(
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
        kind = JOB_KIND_NAMES.get(job.kind, "unknown")
        running = JOBS_RUNNING.labels(kind)
        running.inc()
        try:
            # The job acts for the project it was submitted in: what it reads and queues is that project's.
            with bound_request_id(f"job-{job.id}"), bound_project(job.project_id or DEFAULT_PROJECT):
                try:
                    outcome = await self._execute(job)
                except asyncio.CancelledError:
                    JOB_ATTEMPTS.labels(kind, "interrupted").inc()
                    raise
                except MeshError as error:
                    await self._fail(job, kind, lease, error)
                except Exception:
                    log.exception("job failed unexpectedly", extra={"job_id": job.id, "kind": kind})
                    await self._fail(job, kind, lease, MeshError("internal error"))
                else:
                    JOB_ATTEMPTS.labels(kind, "succeeded").inc()
                    JOB_ATTEMPTS_USED.labels(kind).observe(job.attempts)
                    await self._completions.complete(
                        store_pb2.JobCompletion(
                            lease=lease, result_json=json.dumps(outcome.result), next_step=outcome.next_step
                        )
                    )
        finally:
            running.dec()
            self._running.pop(job.id, None)
            self._nudge.set()

    async def _fail(self, job: store_pb2.Job, kind: str, lease: store_pb2.JobLease, error: MeshError) -> None:
        again = retryable(error) and job.attempts < job.max_attempts
        JOB_ATTEMPTS.labels(kind, "retried" if again else "failed").inc()
        if not again:
            JOB_ATTEMPTS_USED.labels(kind).observe(job.attempts)
        log.warning(
            "job attempt failed",
            extra={
                "job_id": job.id,
                "kind": kind,
                "attempt": job.attempts,
                "code": error.code,
                "retry": again,
            },
        )
        request = store_pb2.FailJobRequest(
            lease=lease,
            error=common_pb2.JobError(code=error.code, message=error.message, status=error.status.name),
            retry_after_s=self._backoff(job.attempts) if again else None,
        )
        await self._record(functools.partial(self._store.fail_job, request), f"the outcome of job {job.id}")

    def _backoff(self, attempt: int) -> float:
        settings = self._settings
        ceiling = min(settings.job_retry_max_backoff_s, settings.job_retry_backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    async def _record(self, send: Callable[[], Awaitable[Any]], what: str) -> Any:
        """Tell the store how jobs ended, retrying for as long as it is unreachable (the jobs stay
        this worker's, their leases renewed once it answers, so an outage of minutes does not run them
        again); its answer, or None if it refused. Only a worker that is stopping gives up, after its
        grace period: then the leases lapse and the jobs run again (at least once, never lost)."""
        attempt = 0
        gave_up_at: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            attempt += 1
            try:
                return await send()
            except MeshError as error:
                if error.status not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.error(
                        "store refused a job outcome",
                        extra={"what": what, "code": error.code, "reason": error.message},
                    )
                    return None
                if attempt == RECORD_WARN_AFTER:
                    log.warning("store unreachable; still recording", extra={"what": what})
            if self._stopping.is_set():
                gave_up_at = gave_up_at or loop.time() + self._settings.job_shutdown_grace_s
                if loop.time() >= gave_up_at:
                    log.error("could not record a job outcome; the job will run again", extra={"what": what})
                    return None
            await asyncio.sleep(min(RECORD_MAX_BACKOFF_S, RECORD_BACKOFF_S * 2**attempt))

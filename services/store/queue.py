"""The durable job queue and pipeline runs: every query behind the store's job RPCs.

A claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING *`: on PostgreSQL
concurrent claimers skip each other's rows instead of waiting; on SQLite the single statement runs
under the database's one write lock, which serialises claimers just as safely. A claim leases the
job to one worker until `lease_expires_at`; a worker that dies stops renewing, and the job becomes
claimable again. A job ends once: the first completion (or failure, or cancel) wins, later ones
return the job as it ended.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from llmmesh.common.v1 import common_pb2
from sqlalchemy import Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.enums import JOB_KIND_NAMES
from services.common.errors import shown
from services.store import batches
from services.store.batches import BATCH_LINE_KIND, BatchView
from services.store.errors import (
    BatchFinished,
    IdempotencyKeyReused,
    InvalidStoreRequest,
    JobFinished,
    JobNotFound,
    PipelineRunFinished,
    PipelineRunNotFound,
    PipelineRunNotResumable,
)
from services.store.repository import keyset_page, page_size, unit_of_work
from services.store.tables import Batch, Job, PipelineRun, utcnow

log = logging.getLogger("llmmesh.store.queue")

# PostgreSQL NOTIFY channel that tells every store replica's watchers that jobs were queued.
NOTIFY_CHANNEL = "llmmesh_jobs"
DEFAULT_MAX_ATTEMPTS = 5
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
WEBHOOK_KIND = JOB_KIND_NAMES[common_pb2.JOB_KIND_WEBHOOK]
# Marks a transaction that queued runnable jobs (AsyncSession.info key).
_ANNOUNCE = "announce_jobs"


@dataclass(frozen=True)
class NewJob:
    kind: str
    request: dict[str, Any]
    max_attempts: int = 0
    webhook_url: str = ""


@dataclass(frozen=True)
class NewBatch:
    """A batch as the orchestrator checked it: its lines' job requests (or the error that settles a
    line at once), or the validation errors that fail it whole."""

    endpoint: str
    input_file_id: str
    completion_window: str
    window_s: float
    metadata: dict[str, str]
    lines: list[tuple[dict[str, Any], dict[str, str] | None]]
    errors: list[dict[str, Any]]
    max_attempts: int = 0


@dataclass(frozen=True)
class Lease:
    job_id: str
    token: str


@dataclass(frozen=True)
class Completion:
    """A job's result as its worker reports it, with a pipeline step's successor if any."""

    lease: Lease
    result: dict[str, Any]
    next_step: NewJob | None = None


@dataclass(frozen=True)
class Claimed:
    """The jobs a claim leased, and the seconds until the next one falls due (None: none pending)."""

    jobs: list[Job]
    next_due_s: float | None


@dataclass(frozen=True)
class RunView:
    """A pipeline run with the latest job of each step it has reached."""

    run: PipelineRun
    steps: list[Job]


def _aware(moment: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every one the store writes is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _check(new: NewJob, idempotency_key: str) -> None:
    if not new.kind or len(new.kind) > 32:
        raise InvalidStoreRequest("a job needs a kind of 1-32 characters")
    if not 0 <= new.max_attempts <= 100:
        raise InvalidStoreRequest("max_attempts must be between 1 and 100 (0 for the default)")
    if len(new.webhook_url) > 2048:
        raise InvalidStoreRequest("webhook_url must be at most 2048 characters")
    if len(idempotency_key) > 200:
        raise InvalidStoreRequest("an idempotency key must be at most 200 characters")


Listed = TypeVar("Listed", Job, PipelineRun)


async def _newest_first(
    db: AsyncSession, model: type[Listed], project: str, limit: int, after: str, conditions: list[Any]
) -> tuple[list[Listed], bool]:
    """One page of `project`'s rows of `model` that meet `conditions`, newest first by (created_at,
    id), after the row `after` when given (a row of another project is none); and whether more follow."""
    limit = page_size(limit)
    query = select(model).where(model.project_id == project, *conditions)
    mark = None
    if after:
        cursor = await db.get(model, after)
        if cursor is None or cursor.project_id != project:
            missing = JobNotFound if model is Job else PipelineRunNotFound
            raise missing(f"no {'job' if model is Job else 'pipeline run'} with id {shown(after)}")
        mark = (cursor.created_at, cursor.id)
    rows, more = await keyset_page(db, query, (model.created_at, model.id), mark, limit)
    return cast(list[Listed], rows), more


class JobSignals:
    """Wakes the WatchJobs streams of this store process when jobs may have become runnable."""

    def __init__(self) -> None:
        self._watchers: set[asyncio.Event] = set()
        self.closed = False

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._watchers.discard(event)

    def notify(self) -> None:
        for event in self._watchers:
            event.set()

    def close(self) -> None:
        """End every watch stream (the server is shutting down)."""
        self.closed = True
        self.notify()


@dataclass(frozen=True)
class QueueStats:
    """What the queue holds now: jobs by (kind, status) for QUEUED and RUNNING, the age of the oldest
    claimable job, and pipeline runs RUNNING without progress for longer than the stall time."""

    jobs: dict[tuple[str, str], int]
    oldest_queued_s: float
    stalled_runs: int


class JobQueue:
    """Jobs and pipeline runs in the store's database."""

    def __init__(self, engine: AsyncEngine, signals: JobSignals) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"
        self.signals = signals

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self._sessions) as session:
            yield session
        if session.info.get(_ANNOUNCE) and not self._postgres:
            self.signals.notify()  # after the commit, so a woken worker finds the jobs

    async def _announce(self, db: AsyncSession) -> None:
        """Tell watchers, once this transaction commits, that jobs were queued: by NOTIFY on
        PostgreSQL, which reaches every store replica; in-process on SQLite, whose file has one."""
        if self._postgres:
            await db.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        db.info[_ANNOUNCE] = True

    # Jobs

    @staticmethod
    def _job(
        new: NewJob,
        project: str,
        pipeline_run_id: str | None = None,
        step_index: int = 0,
        now: datetime | None = None,
    ) -> Job:
        # One instant for both: a claim picks a job up only once `now >= run_at`, so its
        # started_at can never precede created_at (a default stamped at flush time could).
        now = now or utcnow()
        return Job(
            id=_new_id(),
            project_id=project,
            kind=new.kind,
            status="QUEUED",
            attempts=0,
            max_attempts=new.max_attempts or DEFAULT_MAX_ATTEMPTS,
            created_at=now,
            run_at=now,
            request=new.request,
            webhook_url=new.webhook_url or None,
            pipeline_run_id=pipeline_run_id,
            step_index=step_index,
            request_fingerprint="",
        )

    async def stats(self, stall_s: float) -> QueueStats:
        """Counts for the metrics; reads only the QUEUED and RUNNING rows (ix_jobs_claimable)."""
        now = utcnow()
        async with self._transaction() as db:
            rows = await db.execute(
                select(Job.kind, Job.status, func.count())
                .where(Job.status.in_(("QUEUED", "RUNNING")))
                .group_by(Job.kind, Job.status)
            )
            oldest = await db.scalar(
                select(func.min(Job.run_at)).where(Job.status == "QUEUED", Job.run_at <= now)
            )
            stalled = await db.scalar(
                select(func.count())
                .select_from(PipelineRun)
                .where(
                    PipelineRun.status == "RUNNING", PipelineRun.updated_at < now - timedelta(seconds=stall_s)
                )
            )
        return QueueStats(
            jobs={(kind, status): count for kind, status, count in rows},
            oldest_queued_s=(now - _aware(oldest)).total_seconds() if oldest is not None else 0.0,
            stalled_runs=stalled or 0,
        )

    async def enqueue(
        self, project: str, new: NewJob, idempotency_key: str = "", fingerprint: str = ""
    ) -> tuple[Job, bool]:
        """Queue a job of `project`; an idempotency key the project used before returns that job (and
        False) instead."""
        _check(new, idempotency_key)
        if idempotency_key:
            existing = await self._job_by_key(project, idempotency_key, fingerprint)
            if existing is not None:
                return existing, False
        try:
            async with self._transaction() as db:
                job = self._job(new, project)
                job.idempotency_key = idempotency_key or None
                job.request_fingerprint = fingerprint
                db.add(job)
                await self._announce(db)
        except IntegrityError:  # the same key, submitted at the same moment
            existing = await self._job_by_key(project, idempotency_key, fingerprint)
            if existing is None:
                raise
            return existing, False
        return job, True

    async def _job_by_key(self, project: str, key: str, fingerprint: str) -> Job | None:
        async with self._transaction() as db:
            job = await db.scalar(select(Job).where(Job.project_id == project, Job.idempotency_key == key))
        if job is not None and job.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                f"idempotency key {key!r} was used for a different request (job {job.id})"
            )
        return job

    async def get(self, project: str, job_id: str) -> Job:
        """A job of `project`; another project's reads as no job at all."""
        async with self._transaction() as db:
            job = await db.get(Job, job_id)
        if job is None or job.project_id != project:
            raise JobNotFound(f"no job with id {shown(job_id)}")
        return job

    async def list_jobs(
        self, project: str, limit: int, after: str, kinds: Sequence[str], statuses: Sequence[str]
    ) -> tuple[list[Job], bool]:
        """One page of `project`'s jobs, newest first, after the job `after` when given, of the
        given kinds and statuses only (none given: any but batch lines, which their batch shows); and
        whether more follow."""
        conditions = [Job.kind.in_(kinds)] if kinds else [Job.kind != BATCH_LINE_KIND]
        if statuses:
            conditions.append(Job.status.in_(statuses))
        async with self._transaction() as db:
            return await _newest_first(db, Job, project, limit, after, conditions)

    async def _locked(self, db: AsyncSession, job_id: str, project: str | None = None) -> Job:
        """The job, locked for this transaction; only if it is `project`'s when one is named (the
        queue's own bookkeeping names none)."""
        job = await db.get(Job, job_id, with_for_update=True)
        if job is None or (project is not None and job.project_id != project):
            raise JobNotFound(f"no job with id {shown(job_id)}")
        return job

    async def cancel(self, project: str, job_id: str) -> Job:
        async with self._transaction() as db:
            job = await self._locked(db, job_id, project)
            if job.status in TERMINAL:
                raise JobFinished(f"job {job_id} already ended: it is {job.status}")
            await self._end(
                db, job, "CANCELLED", error={"code": "cancelled", "message": "cancelled by request"}
            )
        return job

    async def claim(self, worker: str, limit: int, lease_s: float, batch_limit: int | None = None) -> Claimed:
        """Lease up to `limit` runnable jobs, oldest due first; expired leases count as runnable.
        Batch lines come after every other due job, and at most `batch_limit` of them (None: no cap).
        A claim that leaves the worker room also says when the next job falls due."""
        if limit < 1 or lease_s <= 0 or (batch_limit is not None and batch_limit < 0):
            raise InvalidStoreRequest(
                "limit must be at least 1, lease_s positive and batch_limit not negative"
            )
        now = utcnow()
        async with self._transaction() as db:
            await self._fail_exhausted(db, now)
            await batches.expire_due(db, now)
            runnable = or_(
                and_(Job.status == "QUEUED", Job.run_at <= now),
                and_(Job.status == "RUNNING", Job.lease_expires_at < now, Job.attempts < Job.max_attempts),
            )
            lease = {
                "status": "RUNNING",
                "attempts": Job.attempts + 1,
                "lease_token": secrets.token_hex(16),
                "lease_expires_at": now + timedelta(seconds=lease_s),
                "worker": worker[:200],
                "started_at": func.coalesce(Job.started_at, now),
            }
            # Each a single statement, so on SQLite it runs under the write lock as a whole.
            claimed = await self._lease_due(
                db, runnable & Job.batch_id.is_(None), (Job.run_at,), limit, lease
            )
            lines = min(limit - len(claimed), limit if batch_limit is None else batch_limit)
            if lines > 0:
                claimed += await self._lease_due(
                    db, runnable & Job.batch_id.is_not(None), (Job.run_at, Job.batch_line), lines, lease
                )
            # A full claim is followed by another at once; only a worker with room left waits.
            next_due = await self._next_due(db, now) if len(claimed) < limit else None
        return Claimed(claimed, next_due)

    @staticmethod
    async def _next_due(db: AsyncSession, now: datetime) -> float | None:
        """Seconds until a claim finds work no enqueue announces: the earliest future retry, lease
        expiry (a worker that stopped renewing) or batch window's end; None when there is none."""
        moments = (
            await db.execute(
                select(
                    select(func.min(Job.run_at))
                    .where(Job.status == "QUEUED", Job.run_at > now)
                    .scalar_subquery(),
                    # A lease that lapsed already is due now, not later: its job is claimed once a worker
                    # has room (a finished job wakes its worker), so it must not make the wait zero.
                    select(func.min(Job.lease_expires_at))
                    .where(Job.status == "RUNNING", Job.lease_expires_at > now)
                    .scalar_subquery(),
                    batches.next_expiry().scalar_subquery(),
                )
            )
        ).one()
        due = [_aware(moment) for moment in moments if moment is not None]
        return max(0.0, (min(due) - now).total_seconds()) if due else None

    @staticmethod
    async def _lease_due(
        db: AsyncSession, due: Any, order: tuple[Any, ...], limit: int, lease: dict[str, Any]
    ) -> list[Job]:
        """Lease up to `limit` of the jobs that meet `due`, first by `order`."""
        chosen = select(Job.id).where(due).order_by(*order).limit(limit).with_for_update(skip_locked=True)
        claimed = await db.scalars(
            update(Job).where(Job.id.in_(chosen.scalar_subquery())).values(**lease).returning(Job),
            execution_options={"synchronize_session": False},
        )
        return sorted(claimed, key=lambda job: tuple(getattr(job, c.key) for c in order))

    async def _fail_exhausted(self, db: AsyncSession, now: datetime) -> None:
        """Jobs whose worker stopped renewing on their last attempt end FAILED, not run again."""
        stuck = await db.scalars(
            select(Job)
            .where(Job.status == "RUNNING", Job.lease_expires_at < now, Job.attempts >= Job.max_attempts)
            .with_for_update(skip_locked=True)
        )
        for job in stuck:
            log.warning("job lease expired on its last attempt", extra={"job_id": job.id})
            await self._end(
                db,
                job,
                "FAILED",
                error={
                    "code": "lease_expired",
                    "message": f"the worker running attempt {job.attempts} of {job.max_attempts} stopped responding",
                },
            )

    async def renew(self, leases: Sequence[Lease], lease_s: float) -> list[str]:
        """Extend the leases still held; the ids returned are those, any other was lost."""
        by_token: dict[str, list[str]] = defaultdict(list)
        for lease in leases:
            by_token[lease.token].append(lease.job_id)
        expires = utcnow() + timedelta(seconds=lease_s)
        held: list[str] = []
        async with self._transaction() as db:
            for token, ids in by_token.items():
                renewed = await db.scalars(
                    update(Job)
                    .where(Job.id.in_(ids), Job.lease_token == token, Job.status == "RUNNING")
                    .values(lease_expires_at=expires)
                    .returning(Job.id),
                    execution_options={"synchronize_session": False},
                )
                held.extend(renewed)
        return held

    async def complete_many(self, completions: Sequence[Completion]) -> tuple[int, list[str]]:
        """Record job results in one transaction (for a pipeline step, queue the next step or end the
        run with it): how many jobs this moved to SUCCEEDED, and the ids of those refused for an invalid next step (the rest are
        recorded all the same). The plain ones (held lease, no webhook, no pipeline) take two
        statements for the whole batch; the others go one by one."""
        by_id: dict[str, Completion] = {}
        rejected: list[str] = []
        for completion in completions:
            try:
                if completion.next_step is not None:
                    _check(completion.next_step, "")
            except InvalidStoreRequest as exc:
                log.warning(
                    "job completion refused", extra={"job_id": completion.lease.job_id, "reason": str(exc)}
                )
                rejected.append(completion.lease.job_id)
                continue
            by_id[completion.lease.job_id] = completion
        if not by_id:
            return 0, rejected
        async with self._transaction() as db:
            rows = await db.execute(
                select(
                    Job.id, Job.lease_token, Job.status, Job.webhook_url, Job.pipeline_run_id, Job.batch_id
                )
                .where(Job.id.in_(by_id))
                .order_by(Job.id)  # one lock order for every batch, so two batches cannot deadlock
                .with_for_update()
            )
            plain, other = [], []
            touched: set[str] = set()
            for job_id, token, status, webhook_url, pipeline_run_id, batch_id in rows:
                completion = by_id[job_id]
                if batch_id is not None and status == "RUNNING" and token == completion.lease.token:
                    touched.add(batch_id)
                if (
                    status == "RUNNING"
                    and token == completion.lease.token
                    and not webhook_url
                    and not pipeline_run_id
                ):
                    plain.append(completion)
                else:
                    other.append(completion)
            if plain:
                # A Core UPDATE run as one executemany: no ORM objects built for these jobs.
                jobs = cast(Table, Job.__table__)
                await db.execute(
                    update(jobs)
                    .where(jobs.c.id == bindparam("job_id"))
                    .values(**self._succeeded(bindparam("result", type_=jobs.c.result.type))),
                    [{"job_id": c.lease.job_id, "result": c.result} for c in plain],
                )
            completed = len(plain)
            for batch_id in sorted(touched):  # the batches of the lines just ended, after the lines
                await batches.settle(db, batch_id)
            for completion in other:
                job = await self._locked(db, completion.lease.job_id)
                completed += await self._complete_locked(db, job, completion)
            missing = by_id.keys() - {c.lease.job_id for c in (*plain, *other)}
            if missing:
                log.warning("completions of unknown jobs ignored", extra={"job_ids": sorted(missing)})
        return completed, rejected

    @staticmethod
    def _succeeded(result: Any) -> dict[str, Any]:
        """The columns of a job that succeeded with result, for an UPDATE."""
        return {
            "status": "SUCCEEDED",
            "result": result,
            "error": None,
            "completed_at": utcnow(),
            "lease_token": None,
            "lease_expires_at": None,
        }

    async def _complete_locked(self, db: AsyncSession, job: Job, completion: Completion) -> bool:
        """Complete a job locked in this transaction that the one-statement path did not take (a
        webhook, a pipeline step, a lapsed lease, an ended job); False when it had already ended."""
        if job.status in TERMINAL:
            log.info("completion of an ended job ignored", extra={"job_id": job.id, "status": job.status})
            return False
        if job.lease_token != completion.lease.token:
            # The lease expired and another worker took the job; the work is done all the same.
            log.info("job completed by a worker whose lease had lapsed", extra={"job_id": job.id})
        await self._end(db, job, "SUCCEEDED", result=completion.result)
        if job.pipeline_run_id is not None:
            run = await self._locked_run(db, job.pipeline_run_id)
            run.updated_at = utcnow()
            if completion.next_step is not None:
                db.add(
                    self._job(
                        completion.next_step,
                        run.project_id,
                        pipeline_run_id=run.id,
                        step_index=job.step_index + 1,
                    )
                )
                run.current_step = job.step_index + 1
                await self._announce(db)
            else:
                await self._end_run(db, run, "SUCCEEDED")
        return True

    async def fail(self, lease: Lease, error: dict[str, str], retry_after_s: float | None) -> Job:
        """Record a failed attempt: queued again after retry_after_s while attempts remain, else FAILED."""
        async with self._transaction() as db:
            job = await self._locked(db, lease.job_id)
            if job.status != "RUNNING" or job.lease_token != lease.token:
                return job  # ended, cancelled or taken over: this attempt no longer speaks for it
            job.error = error
            if retry_after_s is not None and job.attempts < job.max_attempts:
                job.status = "QUEUED"
                job.run_at = utcnow() + timedelta(seconds=max(retry_after_s, 0))
                job.lease_token = job.lease_expires_at = None
                # Every worker learns when the retry falls due (its next claim says), not only this
                # one, which may be stopping.
                await self._announce(db)
            else:
                await self._end(db, job, "FAILED")
        return job

    async def release(self, leases: Sequence[Lease]) -> int:
        """Give leased jobs back, uncounted, for another worker to claim now."""
        released = 0
        async with self._transaction() as db:
            for lease in leases:
                result = await db.execute(
                    update(Job)
                    .where(Job.id == lease.job_id, Job.lease_token == lease.token, Job.status == "RUNNING")
                    .values(
                        status="QUEUED",
                        attempts=Job.attempts - 1,
                        lease_token=None,
                        lease_expires_at=None,
                        run_at=utcnow(),
                    ),
                    execution_options={"synchronize_session": False},
                )
                released += result.rowcount  # type: ignore[attr-defined]
            if released:
                await self._announce(db)
        return released

    async def _end(
        self,
        db: AsyncSession,
        job: Job,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Move a job to a terminal status, with what follows from it: its webhook is queued, and a
        pipeline step that did not succeed ends its run."""
        now = utcnow()
        job.status = status
        job.completed_at = now
        job.lease_token = job.lease_expires_at = None
        if result is not None:
            job.result = result
            job.error = None  # an earlier attempt's error no longer describes the job
        if error is not None:
            job.error = error
        if job.webhook_url:
            job.webhook_job_id = await self._queue_webhook(
                db, job.project_id, job.webhook_url, {"job_id": job.id}
            )
        if job.pipeline_run_id is not None and status != "SUCCEEDED":
            run = await self._locked_run(db, job.pipeline_run_id)
            if run.status not in TERMINAL:
                run.updated_at = now
                await self._end_run(db, run, status)
        if job.batch_id is not None:
            await batches.settle(db, job.batch_id)

    async def _end_run(self, db: AsyncSession, run: PipelineRun, status: str) -> None:
        run.status = status
        run.completed_at = utcnow()
        if run.webhook_url:
            run.webhook_job_id = await self._queue_webhook(
                db, run.project_id, run.webhook_url, {"pipeline_run_id": run.id}
            )

    async def _queue_webhook(self, db: AsyncSession, project: str, url: str, target: dict[str, str]) -> str:
        """A delivery job of the project whose job or run it reports on."""
        webhook = self._job(NewJob(WEBHOOK_KIND, {"url": url, **target}), project)
        db.add(webhook)
        await self._announce(db)
        return webhook.id

    # Pipeline runs

    async def create_run(
        self,
        project: str,
        pipeline: str,
        run_input: dict[str, Any],
        first_step: NewJob,
        idempotency_key: str = "",
        fingerprint: str = "",
        webhook_url: str = "",
    ) -> tuple[RunView, bool]:
        _check(first_step, idempotency_key)
        if idempotency_key:
            existing = await self._run_by_key(project, idempotency_key, fingerprint)
            if existing is not None:
                return existing, False
        now = utcnow()
        try:
            async with self._transaction() as db:
                run = PipelineRun(
                    id=_new_id(),
                    project_id=project,
                    pipeline=pipeline,
                    status="RUNNING",
                    input=run_input,
                    current_step=0,
                    idempotency_key=idempotency_key or None,
                    request_fingerprint=fingerprint,
                    webhook_url=webhook_url or None,
                    created_at=now,
                    updated_at=now,
                )
                db.add(run)
                await db.flush()
                step = self._job(first_step, project, pipeline_run_id=run.id)
                db.add(step)
                await self._announce(db)
        except IntegrityError:
            existing = await self._run_by_key(project, idempotency_key, fingerprint)
            if existing is None:
                raise
            return existing, False
        return RunView(run, [step]), True

    async def _run_by_key(self, project: str, key: str, fingerprint: str) -> RunView | None:
        async with self._transaction() as db:
            run = await db.scalar(
                select(PipelineRun).where(
                    PipelineRun.project_id == project, PipelineRun.idempotency_key == key
                )
            )
            if run is None:
                return None
            if run.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused(
                    f"idempotency key {key!r} was used for a different request (pipeline run {run.id})"
                )
            return await self._view(db, run)

    async def _locked_run(self, db: AsyncSession, run_id: str, project: str | None = None) -> PipelineRun:
        """The run, locked; only if it is `project`'s when one is named (as `_locked`)."""
        run = await db.get(PipelineRun, run_id, with_for_update=True)
        if run is None or (project is not None and run.project_id != project):
            raise PipelineRunNotFound(f"no pipeline run with id {shown(run_id)}")
        return run

    async def _view(self, db: AsyncSession, run: PipelineRun) -> RunView:
        jobs = await db.scalars(
            select(Job).where(Job.pipeline_run_id == run.id).order_by(Job.step_index, Job.created_at)
        )
        latest: dict[int, Job] = {}
        for job in jobs:
            latest[job.step_index] = job
        return RunView(run, [latest[index] for index in sorted(latest)])

    async def list_runs(
        self, project: str, limit: int, after: str, statuses: Sequence[str]
    ) -> tuple[list[RunView], bool]:
        """One page of `project`'s pipeline runs, newest first (as `list_jobs`), each with its steps."""
        conditions = [PipelineRun.status.in_(statuses)] if statuses else []
        async with self._transaction() as db:
            page, has_more = await _newest_first(db, PipelineRun, project, limit, after, conditions)
            # Every step of the page's runs in one query; the latest job of each step is its state.
            jobs = await db.scalars(
                select(Job)
                .where(Job.pipeline_run_id.in_([run.id for run in page]))
                .order_by(Job.step_index, Job.created_at)
            )
            latest: dict[str, dict[int, Job]] = defaultdict(dict)
            for job in jobs:
                latest[cast(str, job.pipeline_run_id)][job.step_index] = job
        views = [RunView(run, [latest[run.id][i] for i in sorted(latest[run.id])]) for run in page]
        return views, has_more

    async def get_run(self, project: str, run_id: str) -> RunView:
        async with self._transaction() as db:
            run = await db.get(PipelineRun, run_id)
            if run is None or run.project_id != project:
                raise PipelineRunNotFound(f"no pipeline run with id {shown(run_id)}")
            return await self._view(db, run)

    async def resume_run(self, project: str, run_id: str) -> RunView:
        """Queue the failed (or cancelled) step of a run again; earlier steps keep their results."""
        async with self._transaction() as db:
            run = await self._locked_run(db, run_id, project)
            if run.status not in ("FAILED", "CANCELLED"):
                raise PipelineRunNotResumable(
                    f"pipeline run {run_id} is {run.status}; only a FAILED or CANCELLED run can be resumed"
                )
            view = await self._view(db, run)
            failed = view.steps[run.current_step]
            db.add(
                self._job(
                    NewJob(failed.kind, failed.request, failed.max_attempts),
                    run.project_id,
                    pipeline_run_id=run.id,
                    step_index=failed.step_index,
                )
            )
            run.status = "RUNNING"
            run.completed_at = None
            run.updated_at = utcnow()
            await self._announce(db)
            view = await self._view(db, run)
        return view

    async def cancel_run(self, project: str, run_id: str) -> RunView:
        async with self._transaction() as db:
            # Jobs before their run, the order completions lock them in, so the two cannot deadlock.
            active = await db.scalars(
                select(Job)
                .where(Job.pipeline_run_id == run_id, Job.status.in_(("QUEUED", "RUNNING")))
                .with_for_update()
            )
            jobs = list(active)
            run = await self._locked_run(db, run_id, project)
            if run.status in TERMINAL:
                raise PipelineRunFinished(f"pipeline run {run_id} already ended: it is {run.status}")
            cancelled = {"code": "cancelled", "message": "the pipeline run was cancelled by request"}
            for job in jobs:
                await self._end(db, job, "CANCELLED", error=cancelled)
            if run.status not in TERMINAL:
                await self._end_run(db, run, "CANCELLED")
            return await self._view(db, run)

    # Batches

    async def create_batch(self, project: str, new: NewBatch) -> BatchView:
        """A batch and a job for each of its lines, in one transaction: in progress, or failed at once
        when it has validation errors (then it has no lines). A line with an error is settled FAILED
        without running, so the error file reports it."""
        if new.max_attempts and not 0 < new.max_attempts <= 100:
            raise InvalidStoreRequest("max_attempts must be between 1 and 100 (0 for the default)")
        now = utcnow()
        batch = Batch(
            id=batches.new_batch_id(),
            project_id=project,
            endpoint=new.endpoint,
            input_file_id=new.input_file_id,
            completion_window=new.completion_window,
            batch_metadata=new.metadata,
            line_count=0 if new.errors else len(new.lines),
            created_at=now,
            expires_at=now + timedelta(seconds=new.window_s),
        )
        if new.errors:
            batch.status, batch.errors, batch.failed_at = "failed", new.errors, now
        else:
            batch.status, batch.in_progress_at = "in_progress", now
        async with self._transaction() as db:
            db.add(batch)
            await db.flush()
            if not new.errors:
                for index, (request, error) in enumerate(new.lines):
                    job = self._job(NewJob(BATCH_LINE_KIND, request, new.max_attempts), project, now=now)
                    job.batch_id, job.batch_line = batch.id, index
                    job.idempotency_key = batches.line_key(batch.id, index)
                    if error is not None:
                        job.status, job.error, job.completed_at = "FAILED", error, now
                    db.add(job)
                await self._announce(db)
                await batches.settle(db, batch.id)  # a batch whose every line was refused ends now
            return BatchView(batch, (await batches.counts(db, [batch]))[batch.id])

    async def get_batch(self, project: str, batch_id: str) -> BatchView:
        async with self._transaction() as db:
            batch = await batches.owned(db, project, batch_id)
            return BatchView(batch, (await batches.counts(db, [batch]))[batch.id])

    async def list_batches(self, project: str, limit: int, after: str) -> tuple[list[BatchView], bool]:
        """One page of `project`'s batches, newest first, after the batch `after` when given."""
        async with self._transaction() as db:
            mark = None
            if after:
                cursor = await batches.owned(db, project, after)
                mark = (cursor.created_at, cursor.id)
            page, more = await keyset_page(
                db,
                select(Batch).where(Batch.project_id == project),
                (Batch.created_at, Batch.id),
                mark,
                page_size(limit),
            )
            found = await batches.counts(db, page)
        return [BatchView(batch, found[batch.id]) for batch in page], more

    async def cancel_batch(self, project: str, batch_id: str) -> BatchView:
        """Stop a batch: its queued lines end CANCELLED now; it is cancelling while running lines
        finish (their results are kept), then cancelled."""
        async with self._transaction() as db:
            batch = await batches.owned(db, project, batch_id)
            if batch.status not in batches.OPEN:
                raise BatchFinished(f"batch {batch_id} already ended: it is {batch.status}")
            await batches.stop_lines(db, batch_id, batches.CANCELLED)
            settled = await batches.settle(db, batch_id, cancelling_at=utcnow())
            assert settled is not None
            return BatchView(settled, (await batches.counts(db, [settled]))[batch_id])

    async def batch_lines(
        self, project: str, batch_id: str, after_line: int, limit: int
    ) -> tuple[list[Job], bool]:
        """A batch's line jobs in input order, after the line `after_line` (-1: from the first)."""
        if not 1 <= limit <= 1000:
            raise InvalidStoreRequest("limit must be between 1 and 1000")
        async with self._transaction() as db:
            await batches.owned(db, project, batch_id)
            rows, more = await keyset_page(
                db,
                select(Job).where(Job.batch_id == batch_id),
                (Job.batch_line,),
                (after_line,),
                limit,
                ascending=True,
            )
        return rows, more

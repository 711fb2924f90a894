"""Batches of the Batch API in the store: the batch row and the bookkeeping its line jobs drive.

A batch's lines are jobs of the queue (kind batch_line) that point back at it, one per input line,
each with an idempotency key made of the batch id and the line's index: a line is answered once by
construction, since the queue ends a job once and its result is kept with it. The batch ends in the
transaction that ends its last line (`settle`): completed, or cancelled once cancelling, or expired
once its window passed. Request counts are counted from the lines, never kept beside them.

Lock order, as everywhere in the queue: a batch's jobs before the batch row, so a completion (which
holds its jobs when it settles the batch) and a cancel cannot deadlock.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import shown
from services.store.errors import BatchNotFound
from services.store.tables import Batch, Job, utcnow

BATCH_LINE_KIND = "batch_line"
# OpenAI's statuses of a batch that has not ended yet.
OPEN = ("validating", "in_progress", "finalizing", "cancelling")
ACTIVE_JOBS = ("QUEUED", "RUNNING")


@dataclass(frozen=True)
class Counts:
    """OpenAI's request_counts: lines in all, answered, failed (lines cancelled or expired are neither)."""

    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class BatchView:
    batch: Batch
    counts: Counts


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def line_key(batch_id: str, line: int) -> str:
    """The idempotency key of a batch's line: the same line is one job, whoever queues it."""
    return f"{batch_id}:{line}"


def output_file_id(batch_id: str) -> str:
    return f"file-{batch_id}-output"


def error_file_id(batch_id: str) -> str:
    return f"file-{batch_id}-errors"


async def counts(db: AsyncSession, batches: Sequence[Batch]) -> dict[str, Counts]:
    """The request counts of each batch, in one query over the lines of all of them."""
    ids = [batch.id for batch in batches]
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    if ids:
        rows = await db.execute(
            select(Job.batch_id, Job.status, func.count())
            .where(Job.batch_id.in_(ids))
            .group_by(Job.batch_id, Job.status)
        )
        for batch_id, status, count in rows:
            by_status[str(batch_id)][status] = count
    return {
        batch.id: Counts(
            total=batch.line_count,
            completed=by_status[batch.id].get("SUCCEEDED", 0),
            failed=by_status[batch.id].get("FAILED", 0),
        )
        for batch in batches
    }


async def settle(db: AsyncSession, batch_id: str, **marks: datetime) -> Batch | None:
    """End the batch if none of its lines is queued or running any more, after setting `marks`
    (cancelling_at, expired_at) on it. The batch row is locked before its lines are counted: two
    transactions that each end a batch's last-but-one line take turns here, and the second counts
    after the first committed, so one of them ends it."""
    await db.flush()  # this transaction's own line changes count
    batch = await db.get(Batch, batch_id, with_for_update=True, populate_existing=True)
    if batch is None or batch.status not in OPEN:
        return batch
    for name, moment in marks.items():
        if getattr(batch, name) is None:
            setattr(batch, name, moment)
    if batch.cancelling_at is not None and batch.status != "cancelling":
        batch.status = "cancelling"
    active = await db.scalar(
        select(func.count()).select_from(Job).where(Job.batch_id == batch_id, Job.status.in_(ACTIVE_JOBS))
    )
    if active:
        return batch
    rows = await db.execute(
        select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
    )
    by_status = {status: count for status, count in rows}
    now = utcnow()
    # The files are made of the lines' stored results when read: finalizing takes no time of its own.
    batch.finalizing_at = batch.finalizing_at or now
    if by_status.get("SUCCEEDED"):
        batch.output_file_id = output_file_id(batch.id)
    if by_status.get("FAILED") or by_status.get("CANCELLED"):
        batch.error_file_id = error_file_id(batch.id)
    if batch.cancelling_at is not None:
        batch.status, batch.cancelled_at = "cancelled", now
    elif batch.expired_at is not None:
        batch.status = "expired"
    else:
        batch.status, batch.completed_at = "completed", now
    return batch


async def stop_lines(db: AsyncSession, batch_id: str, error: dict[str, str]) -> int:
    """End a batch's queued lines CANCELLED with `error` (its running ones finish); how many ended.
    The caller locks the batch after this (jobs first)."""
    now = utcnow()
    result = await db.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == "QUEUED")
        .values(status="CANCELLED", error=error, completed_at=now, lease_token=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}
CANCELLED = {"code": "batch_cancelled", "message": "This request was not executed: the batch was cancelled."}


# A batch whose completion window is still running: expire_due stops it once the window passes.
_WINDOW_OPEN = (Batch.status.in_(("in_progress", "validating")), Batch.expired_at.is_(None))


def next_expiry() -> Select[datetime]:
    """When expire_due next has a batch to stop: the earliest open completion window's end."""
    return select(func.min(Batch.expires_at)).where(*_WINDOW_OPEN)


async def expire_due(db: AsyncSession, now: datetime) -> None:
    """Batches whose completion window passed stop: their queued lines end CANCELLED (batch_expired)
    and the batch is expired once its running lines end."""
    due = list(await db.scalars(select(Batch.id).where(*_WINDOW_OPEN, Batch.expires_at < now)))
    for batch_id in due:
        await stop_lines(db, batch_id, EXPIRED)
        await settle(db, batch_id, expired_at=now)


async def owned(db: AsyncSession, project: str, batch_id: str, lock: bool = False) -> Batch:
    """A batch of `project`; another project's reads as no batch at all."""
    batch = await db.get(Batch, batch_id, with_for_update=lock, populate_existing=lock)
    if batch is None or batch.project_id != project:
        raise BatchNotFound(f"no batch with id {shown(batch_id)}")
    return batch

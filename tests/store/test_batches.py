"""Batches in the store's queue over gRPC, on SQLite and PostgreSQL: lines after interactive jobs, the
batch share, request counts, settling on the last line, cancel, expiry and project isolation.

These play the worker's part against the StoreService directly; tests/gateway/test_batches.py runs
the whole mesh through the openai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.tenancy import METADATA_KEY
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[store_pb2_grpc.StoreServiceStub]:
    server, port = create_store(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        yield store_pb2_grpc.StoreServiceStub(channel)


async def create(
    store: store_pb2_grpc.StoreServiceStub,
    lines: int,
    refused: frozenset[int] = frozenset(),
    window_s: float = 3600,
    errors: tuple[store_pb2.BatchError, ...] = (),
) -> store_pb2.Batch:
    request = store_pb2.CreateBatchRequest(
        endpoint="/v1/chat/completions",
        input_file_id="file-in",
        completion_window="24h",
        window_s=window_s,
        metadata={"team": "search"},
        errors=errors,
    )
    for index in range(lines):
        line = request.lines.add(request_json=json.dumps({"custom_id": f"c{index}"}))
        if index in refused:
            line.error.CopyFrom(common_pb2.JobError(code="model_not_found", message="no", status="NOT_FOUND"))
    return (await store.CreateBatch(request)).batch


async def claim(
    store: store_pb2_grpc.StoreServiceStub, limit: int, batch_limit: int | None = None
) -> list[store_pb2.Job]:
    request = store_pb2.ClaimJobsRequest(worker="w", limit=limit, lease_s=30, batch_limit=batch_limit)
    return list((await store.ClaimJobs(request)).jobs)


async def complete(store: store_pb2_grpc.StoreServiceStub, jobs: list[store_pb2.Job]) -> None:
    completions = [
        store_pb2.JobCompletion(
            lease=store_pb2.JobLease(job_id=j.id, lease_token=j.lease_token),
            result_json=json.dumps({"line": j.batch_line}),
        )
        for j in jobs
    ]
    await store.CompleteJobs(store_pb2.CompleteJobsRequest(completions=completions))


async def get(store: store_pb2_grpc.StoreServiceStub, batch_id: str) -> store_pb2.Batch:
    return (await store.GetBatch(store_pb2.GetBatchRequest(batch_id=batch_id))).batch


async def lines(store: store_pb2_grpc.StoreServiceStub, batch_id: str) -> list[store_pb2.Job]:
    found: list[store_pb2.Job] = []
    after = -1
    while True:
        page = await store.ListBatchLines(
            store_pb2.ListBatchLinesRequest(batch_id=batch_id, after_line=after, limit=3)
        )
        found += page.lines
        if not page.has_more:
            return found
        after = page.lines[-1].batch_line


async def test_a_batch_runs_after_interactive_jobs_and_ends_with_its_last_line(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    batch = await create(store, 5, refused=frozenset({3}))
    assert batch.status == "in_progress" and batch.metadata == {"team": "search"}
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        5,
        0,
        1,
    )
    interactive = await store.EnqueueJob(
        store_pb2.EnqueueJobRequest(
            job=store_pb2.NewJob(kind=common_pb2.JOB_KIND_GENERATE, request_json="{}")
        )
    )
    # Queued after the batch, claimed before it; and no more batch lines than the cap.
    first = await claim(store, limit=3, batch_limit=1)
    assert first[0].id == interactive.job.id
    assert [j.batch_line for j in first[1:]] == [0]
    assert await claim(store, limit=3, batch_limit=0) == []
    rest = await claim(store, limit=10)
    assert [j.batch_line for j in rest] == [1, 2, 4], "in input order; the refused line never runs"
    await complete(store, first[1:] + rest[:2])
    assert (await get(store, batch.id)).status == "in_progress"
    await complete(store, rest[2:])
    done = await get(store, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 1)
    assert (
        done.output_file_id == f"file-{batch.id}-output" and done.error_file_id == f"file-{batch.id}-errors"
    )
    assert done.HasField("finalizing_at") and done.HasField("completed_at")
    stored = await lines(store, batch.id)
    assert [j.batch_line for j in stored] == [0, 1, 2, 3, 4]
    assert [json.loads(j.result_json)["line"] for j in stored if j.HasField("result_json")] == [0, 1, 2, 4]
    assert stored[3].error.status == "NOT_FOUND"
    listed = await store.ListJobs(store_pb2.ListJobsRequest())
    assert [j.id for j in listed.jobs] == [interactive.job.id], "lines show in their batch, not the job list"


async def test_a_line_that_fails_for_good_ends_the_batch_with_an_error_file(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    batch = await create(store, 2)
    one, two = await claim(store, 2)
    await complete(store, [one])
    await store.FailJob(
        store_pb2.FailJobRequest(
            lease=store_pb2.JobLease(job_id=two.id, lease_token=two.lease_token),
            error=common_pb2.JobError(code="invalid_argument", message="bad", status="INVALID_ARGUMENT"),
        )
    )
    done = await get(store, batch.id)
    assert done.status == "completed" and done.request_counts.failed == 1
    assert done.error_file_id and done.output_file_id


async def test_cancel_stops_queued_lines_at_once_and_waits_for_running_ones(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    batch = await create(store, 4)
    running_line = (await claim(store, 1))[0]
    cancelling = (await store.CancelBatch(store_pb2.CancelBatchRequest(batch_id=batch.id))).batch
    assert cancelling.status == "cancelling" and cancelling.HasField("cancelling_at")
    assert await claim(store, 10) == [], "no new line starts"
    await complete(store, [running_line])
    cancelled = await get(store, batch.id)
    assert cancelled.status == "cancelled" and cancelled.request_counts.completed == 1
    assert cancelled.output_file_id and cancelled.error_file_id
    codes = [
        j.error.code for j in await lines(store, batch.id) if j.status == common_pb2.JOB_STATUS_CANCELLED
    ]
    assert codes == ["batch_cancelled"] * 3
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await store.CancelBatch(store_pb2.CancelBatchRequest(batch_id=batch.id))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_code(ended.value) == "batch_already_finished"


async def test_a_batch_past_its_window_expires(store: store_pb2_grpc.StoreServiceStub) -> None:
    batch = await create(store, 3, window_s=0.3)
    await asyncio.sleep(0.4)
    assert await claim(store, 10) == [], "the claim that finds it due stops it"
    expired = await get(store, batch.id)
    assert expired.status == "expired" and expired.HasField("expired_at")
    assert expired.error_file_id and not expired.output_file_id


async def test_a_claim_that_takes_no_line_says_when_the_window_closes(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    await create(store, 2, window_s=60)
    response = await store.ClaimJobs(
        store_pb2.ClaimJobsRequest(worker="w", limit=4, lease_s=600, batch_limit=0)
    )
    assert list(response.jobs) == [], "no batch room: the lines wait"
    assert response.HasField("next_due_s") and 59 < response.next_due_s <= 60, (
        "the window's end is when a claim next has work that no enqueue announces"
    )


async def test_a_lapsed_line_waiting_for_batch_room_does_not_make_a_claim_due_at_once(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    await create(store, 1, window_s=60)
    lapsed = await store.ClaimJobs(store_pb2.ClaimJobsRequest(worker="dies", limit=1, lease_s=0.1))
    assert len(lapsed.jobs) == 1
    await asyncio.sleep(0.2)
    response = await store.ClaimJobs(
        store_pb2.ClaimJobsRequest(worker="w", limit=4, lease_s=30, batch_limit=0)
    )
    assert list(response.jobs) == [], "no batch room: the lapsed line waits for a line to finish"
    assert response.HasField("next_due_s") and response.next_due_s > 50, (
        "the window's end, not 0: a worker told 0 would claim again and again while its batch share is full"
    )


async def test_a_batch_with_validation_errors_is_failed_without_lines(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    problem = store_pb2.BatchError(code="invalid_json", message="line 2 is not JSON", line=2)
    batch = await create(store, 3, errors=(problem,))
    assert batch.status == "failed" and batch.HasField("failed_at")
    assert [(e.code, e.line) for e in batch.errors] == [("invalid_json", 2)]
    assert batch.request_counts.total == 0 and await claim(store, 10) == []


async def test_batches_are_paged_newest_first_and_another_projects_are_not_found(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    made = [(await create(store, 1)).id for _ in range(3)]
    first = await store.ListBatches(store_pb2.ListBatchesRequest(limit=2))
    assert [b.id for b in first.batches] == made[::-1][:2] and first.has_more
    second = await store.ListBatches(store_pb2.ListBatchesRequest(limit=2, after=first.batches[-1].id))
    assert [b.id for b in second.batches] == [made[0]] and not second.has_more
    await store.CreateProject(store_pb2.CreateProjectRequest(id="other", name="Other"))
    other = ((METADATA_KEY, "other"),)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await store.GetBatch(store_pb2.GetBatchRequest(batch_id=made[0]), metadata=other)
    assert (
        missing.value.code() == grpc.StatusCode.NOT_FOUND and error_code(missing.value) == "batch_not_found"
    )
    assert not (await store.ListBatches(store_pb2.ListBatchesRequest(), metadata=other)).batches

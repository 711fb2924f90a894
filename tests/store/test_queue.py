"""The store's job queue over gRPC, on SQLite and PostgreSQL: claims, leases, retries, idempotency.

These drive the StoreService directly, playing the worker's part, so each rule of the queue is
checked on its own; test_jobs.py runs the orchestrator's real workers over the whole mesh.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[store_pb2_grpc.StoreServiceStub]:
    server, port = create_store(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        yield store_pb2_grpc.StoreServiceStub(channel)


async def enqueue(
    store: store_pb2_grpc.StoreServiceStub,
    n: int = 1,
    key: str = "",
    max_attempts: int = 0,
    **request: object,
) -> store_pb2.EnqueueJobResponse:
    return await store.EnqueueJob(
        store_pb2.EnqueueJobRequest(
            job=store_pb2.NewJob(
                kind=common_pb2.JOB_KIND_GENERATE,
                request_json=json.dumps({"n": n, **request}),
                max_attempts=max_attempts,
            ),
            idempotency_key=key,
            request_fingerprint=f"fp-{n}",
        )
    )


async def claim(
    store: store_pb2_grpc.StoreServiceStub, limit: int = 10, lease_s: float = 30, worker: str = "w1"
) -> list[store_pb2.Job]:
    response = await store.ClaimJobs(store_pb2.ClaimJobsRequest(worker=worker, limit=limit, lease_s=lease_s))
    return list(response.jobs)


def lease(job: store_pb2.Job) -> store_pb2.JobLease:
    return store_pb2.JobLease(job_id=job.id, lease_token=job.lease_token)


async def get(store: store_pb2_grpc.StoreServiceStub, job_id: str) -> store_pb2.Job:
    return (await store.GetJob(store_pb2.GetJobRequest(job_id=job_id))).job


async def complete(store: store_pb2_grpc.StoreServiceStub, job: store_pb2.Job, text: str) -> store_pb2.Job:
    """Record one result as a worker does (a batch of one); the job as the store then holds it."""
    completion = store_pb2.JobCompletion(lease=lease(job), result_json=json.dumps({"text": text}))
    await store.CompleteJobs(store_pb2.CompleteJobsRequest(completions=[completion]))
    return await get(store, job.id)


async def fail(
    store: store_pb2_grpc.StoreServiceStub, job: store_pb2.Job, code: str, retry_after_s: float | None = None
) -> store_pb2.Job:
    request = store_pb2.FailJobRequest(
        lease=lease(job),
        error=common_pb2.JobError(code=code, message="it failed"),
        retry_after_s=retry_after_s,
    )
    return (await store.FailJob(request)).job


async def test_a_queued_job_is_claimed_once_and_its_result_kept(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    queued = (await enqueue(store, 1)).job
    assert queued.status == common_pb2.JOB_STATUS_QUEUED and queued.attempts == 0
    assert queued.max_attempts == 5, "the default"
    [job] = await claim(store)
    assert job.id == queued.id and job.status == common_pb2.JOB_STATUS_RUNNING
    assert job.attempts == 1 and job.lease_token
    assert json.loads(job.request_json) == {"n": 1}
    assert await claim(store) == [], "a leased job is nobody else's"
    done = await complete(store, job, "first")
    assert done.status == common_pb2.JOB_STATUS_SUCCEEDED
    assert json.loads(done.result_json) == {"text": "first"}
    assert done.HasField("started_at") and done.HasField("completed_at")
    again = await complete(store, job, "second")
    assert json.loads(again.result_json) == {"text": "first"}, "a job ends once; the first result stays"


async def test_a_batch_of_completions_records_each_as_completejob_would(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    for n in range(3):
        await enqueue(store, n)
    hooked = (
        await store.EnqueueJob(
            store_pb2.EnqueueJobRequest(
                job=store_pb2.NewJob(
                    kind=common_pb2.JOB_KIND_GENERATE,
                    request_json="{}",
                    webhook_url="http://127.0.0.1:9/hook",
                )
            )
        )
    ).job
    claimed = {job.id: job for job in await claim(store)}
    with_webhook = claimed.pop(hooked.id)
    first, second, ended = claimed.values()
    await complete(store, ended, "already")

    def result(job: store_pb2.Job, text: str, **fields: object) -> store_pb2.JobCompletion:
        return store_pb2.JobCompletion(lease=lease(job), result_json=json.dumps({"text": text}), **fields)

    response = await store.CompleteJobs(
        store_pb2.CompleteJobsRequest(
            completions=[
                result(first, "one"),
                result(second, "two"),
                result(ended, "late"),
                result(with_webhook, "hooked"),
                store_pb2.JobCompletion(lease=lease(first), result_json="[1]"),
                store_pb2.JobCompletion(lease=store_pb2.JobLease(job_id="no-such-job", lease_token="x")),
            ]
        )
    )
    assert response.completed == 3, "the plain two and the one with a webhook; the ended one keeps its result"
    assert list(response.rejected_job_ids) == [first.id], "result_json that is not an object"
    for job, text in ((first, "one"), (second, "two"), (ended, "already"), (with_webhook, "hooked")):
        stored = await get(store, job.id)
        assert stored.status == common_pb2.JOB_STATUS_SUCCEEDED, job.id
        assert json.loads(stored.result_json) == {"text": text}
        assert not stored.lease_token and stored.HasField("completed_at")
    webhook = await get(store, (await get(store, with_webhook.id)).webhook_job_id)
    assert webhook.status == common_pb2.JOB_STATUS_QUEUED and webhook.kind == common_pb2.JOB_KIND_WEBHOOK


async def test_an_idempotency_key_returns_the_first_job(store: store_pb2_grpc.StoreServiceStub) -> None:
    first = await enqueue(store, 1, key="order-42")
    second = await enqueue(store, 1, key="order-42")
    assert first.created and not second.created
    assert second.job.id == first.job.id
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await enqueue(store, 2, key="order-42")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_code(refused.value) == "idempotency_key_reused"
    assert len(await claim(store)) == 1, "one job, however often it was submitted"


async def test_concurrent_submissions_with_one_key_make_one_job(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    answers = await asyncio.gather(*(enqueue(store, 1, key="same") for _ in range(8)))
    assert len({answer.job.id for answer in answers}) == 1
    assert sum(answer.created for answer in answers) == 1


async def test_a_failed_attempt_backs_off_then_fails_for_good_after_max_attempts(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    queued = (await enqueue(store, 1, max_attempts=2)).job
    [job] = await claim(store)
    retried = await fail(store, job, "upstream_unavailable", retry_after_s=0.3)
    assert retried.status == common_pb2.JOB_STATUS_QUEUED
    assert retried.error.code == "upstream_unavailable", "the last error is visible while the job waits"
    assert await claim(store) == [], "not before its backoff has passed"
    await asyncio.sleep(0.4)
    [job] = await claim(store)
    assert job.attempts == 2
    failed = await fail(store, job, "upstream_timeout", retry_after_s=0)
    assert failed.status == common_pb2.JOB_STATUS_FAILED, "no attempts left"
    assert failed.error.code == "upstream_timeout" and failed.attempts == 2
    assert (await get(store, queued.id)).status == common_pb2.JOB_STATUS_FAILED
    assert await claim(store) == []


async def test_a_permanent_error_fails_the_job_at_once(store: store_pb2_grpc.StoreServiceStub) -> None:
    await enqueue(store, 1)
    [job] = await claim(store)
    failed = await fail(store, job, "model_not_found")
    assert failed.status == common_pb2.JOB_STATUS_FAILED and failed.attempts == 1


async def test_an_expired_lease_lets_another_worker_take_the_job(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    await enqueue(store, 1)
    [stale] = await claim(store, lease_s=0.2, worker="dies")
    await asyncio.sleep(0.3)
    [taken] = await claim(store, worker="survivor")
    assert taken.id == stale.id and taken.attempts == 2
    assert taken.lease_token != stale.lease_token
    held = await store.RenewLeases(
        store_pb2.RenewLeasesRequest(leases=[lease(stale), lease(taken)], lease_s=30)
    )
    assert list(held.held_job_ids) == [taken.id], "the stale worker learns it lost the job"
    # The stale worker comes back and finishes first: its result stands, the second is ignored.
    assert (await complete(store, stale, "from the stale worker")).status == common_pb2.JOB_STATUS_SUCCEEDED
    final = await complete(store, taken, "from the survivor")
    assert json.loads(final.result_json) == {"text": "from the stale worker"}


async def test_a_lease_that_expires_on_the_last_attempt_fails_the_job(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    queued = (await enqueue(store, 1, max_attempts=1)).job
    await claim(store, lease_s=0.1)
    await asyncio.sleep(0.2)
    assert await claim(store) == []
    job = await get(store, queued.id)
    assert job.status == common_pb2.JOB_STATUS_FAILED
    assert job.error.code == "lease_expired"


async def test_a_claim_says_when_the_next_job_falls_due(store: store_pb2_grpc.StoreServiceStub) -> None:
    async def next_due(limit: int = 10, worker: str = "idle") -> float | None:
        response = await store.ClaimJobs(store_pb2.ClaimJobsRequest(worker=worker, limit=limit, lease_s=30))
        return response.next_due_s if response.HasField("next_due_s") else None

    assert await next_due() is None, "an empty queue has nothing pending: only an enqueue wakes a worker"
    await enqueue(store, 1)
    [job] = await claim(store, lease_s=40, worker="busy")
    due = await next_due()
    assert due is not None and 39 < due <= 40, f"the running job's lease ends in 40 s, not {due}"
    await fail(store, job, "upstream_unavailable", retry_after_s=8)
    due = await next_due()
    assert due is not None and 7 < due <= 8, f"the retry's backoff ends in 8 s, not {due}"
    await enqueue(store, 2)
    assert await next_due(limit=1) is None, "a full claim is followed by another at once, so it says nothing"


async def test_renewal_keeps_a_job_from_being_taken(store: store_pb2_grpc.StoreServiceStub) -> None:
    await enqueue(store, 1)
    [job] = await claim(store, lease_s=0.3)
    for _ in range(3):
        await asyncio.sleep(0.15)
        held = await store.RenewLeases(store_pb2.RenewLeasesRequest(leases=[lease(job)], lease_s=0.3))
        assert list(held.held_job_ids) == [job.id]
    assert await claim(store, worker="other") == []


async def test_concurrent_claimers_never_share_a_job(store: store_pb2_grpc.StoreServiceStub) -> None:
    await asyncio.gather(*(enqueue(store, n) for n in range(120)))
    claimed: list[str] = []

    async def worker(name: str) -> None:
        while jobs := await claim(store, limit=7, worker=name):
            claimed.extend(job.id for job in jobs)

    await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    assert len(claimed) == 120
    assert len(set(claimed)) == 120, "every job went to exactly one claimer"


async def test_cancel_stops_a_queued_job_and_refuses_a_finished_one(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    queued = (await enqueue(store, 1)).job
    cancelled = (await store.CancelJob(store_pb2.CancelJobRequest(job_id=queued.id))).job
    assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
    assert await claim(store) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await store.CancelJob(store_pb2.CancelJobRequest(job_id=queued.id))
    assert error_code(refused.value) == "job_already_finished"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await store.GetJob(store_pb2.GetJobRequest(job_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and error_code(missing.value) == "job_not_found"


async def test_a_cancelled_running_job_loses_its_lease(store: store_pb2_grpc.StoreServiceStub) -> None:
    await enqueue(store, 1)
    [job] = await claim(store)
    await store.CancelJob(store_pb2.CancelJobRequest(job_id=job.id))
    held = await store.RenewLeases(store_pb2.RenewLeasesRequest(leases=[lease(job)], lease_s=30))
    assert list(held.held_job_ids) == []
    assert (await complete(store, job, "late")).status == common_pb2.JOB_STATUS_CANCELLED


async def test_released_jobs_are_claimable_at_once_and_the_attempt_is_not_counted(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    await enqueue(store, 1)
    [job] = await claim(store)
    released = await store.ReleaseJobs(store_pb2.ReleaseJobsRequest(leases=[lease(job)]))
    assert released.released == 1
    [again] = await claim(store)
    assert again.id == job.id and again.attempts == 1


async def test_watchers_are_woken_when_a_job_is_queued(store: store_pb2_grpc.StoreServiceStub) -> None:
    stream = store.WatchJobs(store_pb2.WatchJobsRequest())
    messages = stream.__aiter__()
    await asyncio.wait_for(messages.__anext__(), 5)  # the first comes at once
    start = datetime.now(UTC)
    await enqueue(store, 1)
    await asyncio.wait_for(messages.__anext__(), 5)
    assert (datetime.now(UTC) - start).total_seconds() < 2
    stream.cancel()


async def test_watchers_are_woken_when_a_failed_job_is_queued_for_a_retry(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    """The worker that failed may be stopping: the others must hear of the retry and claim to learn when
    it falls due."""
    await enqueue(store, 1)
    [job] = await claim(store)
    stream = store.WatchJobs(store_pb2.WatchJobsRequest())
    messages = stream.__aiter__()
    await asyncio.wait_for(messages.__anext__(), 5)  # the first comes at once
    await fail(store, job, "upstream_unavailable", retry_after_s=5)
    await asyncio.wait_for(messages.__anext__(), 5)
    stream.cancel()


async def test_jobs_are_listed_newest_first_a_page_at_a_time_and_filtered(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    ids = [(await enqueue(store, n)).job.id for n in range(5)]
    [claimed] = await claim(store, limit=1)  # the oldest
    await complete(store, claimed, "done")
    pages, after = [], ""
    while True:
        page = await store.ListJobs(store_pb2.ListJobsRequest(limit=2, after=after))
        pages.append([job.id for job in page.jobs])
        if not page.has_more:
            break
        after = page.jobs[-1].id
    assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]
    succeeded = await store.ListJobs(store_pb2.ListJobsRequest(statuses=[common_pb2.JOB_STATUS_SUCCEEDED]))
    assert [job.id for job in succeeded.jobs] == [claimed.id] == [ids[0]]
    queued = await store.ListJobs(
        store_pb2.ListJobsRequest(
            kinds=[common_pb2.JOB_KIND_GENERATE], statuses=[common_pb2.JOB_STATUS_QUEUED]
        )
    )
    assert [job.id for job in queued.jobs] == ids[:0:-1] and not queued.has_more
    sessions = await store.ListJobs(store_pb2.ListJobsRequest(kinds=[common_pb2.JOB_KIND_SESSION]))
    assert list(sessions.jobs) == []
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await store.ListJobs(store_pb2.ListJobsRequest(after="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    for bad in (store_pb2.ListJobsRequest(limit=101), store_pb2.ListJobsRequest(statuses=[0])):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await store.ListJobs(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_pipeline_runs_are_listed_newest_first_with_their_steps(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    first_step = store_pb2.NewJob(kind=common_pb2.JOB_KIND_PIPELINE_STEP, request_json="{}")
    runs = [
        (
            await store.CreatePipelineRun(
                store_pb2.CreatePipelineRunRequest(
                    pipeline="p", input_json=f'{{"n": {n}}}', first_step=first_step
                )
            )
        ).run
        for n in range(3)
    ]
    await store.CancelPipelineRun(store_pb2.CancelPipelineRunRequest(run_id=runs[0].id))
    page = await store.ListPipelineRuns(store_pb2.ListPipelineRunsRequest(limit=2))
    assert [run.id for run in page.runs] == [runs[2].id, runs[1].id] and page.has_more
    assert [[step.status for step in run.steps] for run in page.runs] == [[common_pb2.JOB_STATUS_QUEUED]] * 2
    rest = await store.ListPipelineRuns(store_pb2.ListPipelineRunsRequest(limit=2, after=page.runs[-1].id))
    assert [run.id for run in rest.runs] == [runs[0].id] and not rest.has_more
    cancelled = await store.ListPipelineRuns(
        store_pb2.ListPipelineRunsRequest(statuses=[common_pb2.PIPELINE_RUN_STATUS_CANCELLED])
    )
    assert [(run.id, run.steps[0].status) for run in cancelled.runs] == [
        (runs[0].id, common_pb2.JOB_STATUS_CANCELLED)
    ]

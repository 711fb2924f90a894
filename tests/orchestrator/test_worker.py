"""Recording a job's outcome: retried for as long as the store is unreachable, so a store outage of
minutes does not make finished jobs run again; given up only by a worker that is stopping."""

from __future__ import annotations

import grpc
import pytest

from services.common.errors import RemoteError
from services.orchestrator import worker
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.worker import JobWorker


class FlakyStore:
    """A send that fails as an unreachable store does, `down_for` times, then answers."""

    def __init__(self, down_for: int, status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.down_for = down_for
        self.status = status
        self.calls = 0

    async def send(self) -> str:
        self.calls += 1
        if self.calls <= self.down_for:
            raise RemoteError(self.status, "store_unavailable", "the database is unreachable")
        return "recorded"


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "RECORD_BACKOFF_S", 0.0005)
    monkeypatch.setattr(worker, "RECORD_MAX_BACKOFF_S", 0.001)


def job_worker(**settings: float) -> JobWorker:
    return JobWorker(None, None, OrchestratorSettings(**settings))  # type: ignore[arg-type]


async def test_an_outcome_is_recorded_however_many_times_the_store_was_unreachable() -> None:
    store = FlakyStore(down_for=200)  # at the real backoff, minutes of outage
    assert await job_worker()._record(store.send, "a job's result") == "recorded"
    assert store.calls == 201


async def test_a_store_that_refuses_an_outcome_is_not_asked_again() -> None:
    store = FlakyStore(down_for=1, status=grpc.StatusCode.INVALID_ARGUMENT)
    assert await job_worker()._record(store.send, "a job's result") is None
    assert store.calls == 1


async def test_a_stopping_worker_gives_up_after_its_grace_period() -> None:
    stopping = job_worker(job_shutdown_grace_s=0.05)
    stopping._stopping.set()
    store = FlakyStore(down_for=10**9)
    assert await stopping._record(store.send, "a job's result") is None
    assert 1 < store.calls < 10**9

"""What an in-process mesh logged (every service shares the test's logging): whether a stream's RPCs
ended as cancelled in every service they crossed, and any error or traceback logged meanwhile."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from tests.support.mesh import eventually

# A generation's streams, from the orchestrator to the gateway and from inference to the orchestrator.
GENERATION_STREAMS = (
    "/llmmesh.orchestrator.v1.OrchestratorService/StreamGeneration",
    "/llmmesh.inference.v1.InferenceService/Generate",
)


def cancelled_rpcs(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The methods of the RPCs whose "rpc done" line says cancelled."""
    return {
        str(getattr(r, "method", ""))
        for r in caplog.records
        if r.getMessage() == "rpc done" and getattr(r, "outcome", "") == "cancelled"
    }


async def errors_once_cancelled(
    caplog: pytest.LogCaptureFixture, methods: tuple[str, ...] = GENERATION_STREAMS
) -> list[str]:
    """Wait until each of `methods` ended as cancelled (failing when one did not), then return every
    record logged at ERROR or above or with a traceback. Garbage is collected first, so an async
    generator left unclosed, or a task whose exception nobody retrieved, has been finalized and logged."""
    await eventually(lambda: cancelled_rpcs(caplog) >= set(methods), timeout_s=5)
    assert cancelled_rpcs(caplog) >= set(methods), "the client's leaving cancelled every stream"
    gc.collect()
    await asyncio.sleep(0.1)  # the finalizers the collection scheduled run, and log what they raise
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info
    ]

"""Crash safety of the job queue: worker processes killed with SIGKILL mid-work lose no job and
finish none twice. Real processes on PostgreSQL, two orchestrators sharing the queue."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import grpc
import pytest
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from sqlalchemy.engine import make_url

from tests.support.mesh import POSTGRES_URL_ENV, fresh_postgres_database
from tests.support.processes import Services, tail, two_orchestrators_env

JOBS = 300
KILLS = 3
# "slow 20": twenty deltas 50 ms apart, about 1 s of work per job; 16 at a time per worker, so the
# kills land while jobs run.
PROMPT = "slow 20"
EXPECTED = "".join(f"t{i} " for i in range(20))


async def _statuses(database_url: str) -> list[asyncpg.Record]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return list(
            await connection.fetch("SELECT status, attempts, result FROM jobs WHERE kind = 'generate'")
        )
    finally:
        await connection.close()


def test_jobs_survive_repeated_kill_9_of_a_worker(tmp_path: Path) -> None:
    server_url = os.environ.get(POSTGRES_URL_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_URL_ENV} to run the crash test on it")
    postgres = fresh_postgres_database(server_url)
    database_url = asyncio.run(postgres.__aenter__())
    env, survivor_env = two_orchestrators_env(tmp_path, database_url)
    services = Services(tmp_path)
    try:
        services.start("store", "store", env)
        services.start("inference", "inference", env)
        services.start("victim", "orchestrator", env)
        services.start("survivor", "orchestrator", survivor_env)
        with grpc.insecure_channel(f"127.0.0.1:{survivor_env['ORCHESTRATOR_PORT']}") as channel:
            orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            for index in range(JOBS):
                orchestrator.SubmitGeneration(
                    orchestrator_pb2.SubmitGenerationRequest(
                        spec=orchestrator_pb2.GenerationSpec(prompt=PROMPT),
                        # Kills alone must not use up a job's attempts.
                        options=orchestrator_pb2.JobOptions(max_attempts=20, idempotency_key=f"job-{index}"),
                    ),
                    timeout=10,
                )
        for _ in range(KILLS):
            time.sleep(0.8)
            services.kill("victim")
            services.start("victim", "orchestrator", env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = asyncio.run(_statuses(database_url))
            if all(row["status"] == "SUCCEEDED" for row in rows):
                break
            time.sleep(0.5)
        rows = asyncio.run(_statuses(database_url))
        assert len(rows) == JOBS, "no job lost, none duplicated"
        assert {row["status"] for row in rows} == {"SUCCEEDED"}, tail(tmp_path)
        assert all(json.loads(row["result"])["text"] == EXPECTED for row in rows), "one stored result each"
        assert any(row["attempts"] > 1 for row in rows), "the kills interrupted running jobs"
    finally:
        codes = services.stop()
        asyncio.run(postgres.__aexit__())
    assert codes == {"store": 0, "inference": 0, "victim": 0, "survivor": 0}, tail(tmp_path)

"""Crash safety of the Batch API: one of two orchestrators running a batch is killed with SIGKILL,
again and again, mid-batch, and then the store is; the batch completes with every line answered
exactly once in its output file (no duplicates, no gaps). Real processes on PostgreSQL, driven
through the openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
import openai
import pytest
from sqlalchemy.engine import make_url

from tests.support.mesh import POSTGRES_URL_ENV, fresh_postgres_database
from tests.support.processes import Services, tail, two_orchestrators_env

LINES = 200
KILLS = 3
# "slow 10": ten deltas 50 ms apart, about 0.5 s a line; 8 lines at a time per orchestrator, so the
# kills land while lines run.
PROMPT = "slow 10"
EXPECTED = "".join(f"t{i} " for i in range(10))


async def _most_attempts(database_url: str) -> int:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("SELECT max(attempts) FROM jobs WHERE kind = 'batch_line'"))
    finally:
        await connection.close()


def test_a_batch_survives_repeated_kill_9_of_an_orchestrator(tmp_path: Path) -> None:
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
        services.start("gateway", "gateway", env)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{env['GATEWAY_PORT']}/v1", api_key="unused", max_retries=3
        )
        lines = [
            {
                "custom_id": f"line-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "local", "messages": [{"role": "user", "content": PROMPT}]},
            }
            for i in range(LINES)
        ]
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("lines.jsonl", content), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        for _ in range(KILLS):
            time.sleep(1.0)
            services.kill("victim")
            services.start("victim", "orchestrator", env)
        deadline = time.monotonic() + 120
        while (
            batch := client.batches.retrieve(batch.id)
        ).status == "in_progress" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert batch.status == "completed", (batch, tail(tmp_path))
        assert (batch.request_counts.completed, batch.request_counts.failed) == (LINES, 0)
        assert batch.error_file_id is None and batch.output_file_id is not None
        output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
        assert [entry["custom_id"] for entry in output] == [f"line-{i}" for i in range(LINES)], (
            "no duplicate, no gap"
        )
        assert all(
            entry["response"]["body"]["choices"][0]["message"]["content"] == EXPECTED for entry in output
        )
        client.close()
        assert asyncio.run(_most_attempts(database_url)) > 1, "the kills interrupted running lines"
    finally:
        codes = services.stop()
        asyncio.run(postgres.__aexit__())
    assert codes == {"store": 0, "inference": 0, "victim": 0, "survivor": 0, "gateway": 0}, tail(tmp_path)

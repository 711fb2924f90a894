"""Limits that hold across gateway replicas: two gateways in front of one mesh, sharing one Redis.

Needs the Redis at 127.0.0.1:6379 (or LLM_MESH_TEST_REDIS_URL); each test uses keys of its own prefix
and deletes them. Without Redis the shared-limit tests skip, saying so; the failure policy is tested
against a closed loopback port either way.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.support.auth import ADMIN, ADMIN_TOKEN, create_key
from tests.support.http import assert_error
from tests.support.mesh import Gateway, free_port, scripted_mesh, serve_app

REDIS_URL = os.environ.get("LLM_MESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CHAT = "/v1/chat/completions"


def chat(text: str) -> dict[str, Any]:
    return {"model": "scripted", "messages": [{"role": "user", "content": text}]}


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis, its keys deleted afterwards."""
    redis = Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        await redis.ping()
    except (RedisError, OSError):
        await redis.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: the shared limiter is not tested here")
    name = f"llmmesh-test-{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        keys = [key async for key in redis.scan_iter(f"{name}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@dataclass
class Replicas:
    first: Gateway
    second: httpx.AsyncClient


@asynccontextmanager
async def two_gateways(tmp_path: Path, **gateway_settings: Any) -> AsyncIterator[Replicas]:
    """Two gateways with the same settings in front of one mesh."""
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN, **gateway_settings}
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=10, gateway_settings=settings
    ) as first:
        assert first.settings is not None
        async for base_url in serve_app(first.settings):
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as second:
                yield Replicas(first, second)


async def test_a_keys_requests_per_minute_hold_across_replicas(tmp_path: Path, prefix: str) -> None:
    async with two_gateways(tmp_path, redis_url=REDIS_URL, redis_prefix=prefix) as replicas:
        key = await create_key(replicas.first, rpm_limit=3)
        headers = {"Authorization": f"Bearer {key}"}
        answers = []
        for client in (replicas.first.client, replicas.second, replicas.first.client, replicas.second):
            answers.append(await client.post(CHAT, json=chat("hi"), headers=headers))
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = assert_error(answers[3], 429, "rate_limited")
    assert "3 requests per minute" in limited["message"]
    assert int(answers[3].headers["Retry-After"]) >= 1


async def test_the_cap_on_generations_in_flight_holds_across_replicas(tmp_path: Path, prefix: str) -> None:
    async with two_gateways(
        tmp_path, redis_url=REDIS_URL, redis_prefix=prefix, max_concurrent_requests=1
    ) as replicas:
        key = await create_key(replicas.first)
        headers = {"Authorization": f"Bearer {key}"}
        slow = asyncio.create_task(replicas.first.client.post(CHAT, json=chat("slow 10"), headers=headers))
        for _ in range(100):  # until the slow one holds the mesh's only slot
            if replicas.first.backend.calls:
                break
            await asyncio.sleep(0.02)
        refused = await replicas.second.post(CHAT, json=chat("hi"), headers=headers)
        assert (await slow).status_code == 200
        after = await replicas.second.post(CHAT, json=chat("hi"), headers=headers)
    error = assert_error(refused, 503, "overloaded")
    assert "1 generations in flight" in error["message"]
    assert after.status_code == 200, "the slot came back when the first answer ended"


def _limiter_errors(operation: str) -> float:
    return REGISTRY.get_sample_value("llmmesh_gateway_limiter_errors_total", {"operation": operation}) or 0.0


async def test_redis_down_fails_open_by_default_counting_each_decision(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with two_gateways(tmp_path, redis_url=down, redis_timeout_s=0.2) as replicas:
        key = await create_key(replicas.first, rpm_limit=1)
        headers = {"Authorization": f"Bearer {key}"}
        before = _limiter_errors("admit")
        answers = [await replicas.second.post(CHAT, json=chat("hi"), headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], "open: admitted although the limit is 1"
    assert _limiter_errors("admit") - before == 2


async def test_redis_down_fails_closed_when_asked_to(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with two_gateways(
        tmp_path, redis_url=down, redis_timeout_s=0.2, redis_failure="closed"
    ) as replicas:
        key = await create_key(replicas.first)
        response = await replicas.second.post(
            CHAT, json=chat("hi"), headers={"Authorization": f"Bearer {key}"}
        )
        admin = await replicas.first.client.get("/admin/v1/api-keys", headers=ADMIN)
    error = response.json()["error"]
    assert response.status_code == 503, response.text
    assert (error["code"], response.headers["Retry-After"]) == ("limiter_unavailable", "1")
    assert admin.status_code == 200, "the admin API does not depend on the limiter"

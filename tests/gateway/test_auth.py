"""API keys, the admin API, per-key rate limits, the concurrency limit and the body size limit,
through the gateway over real HTTP in front of the real store (keys hashed in it) and the mesh."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.auth import ADMIN, ADMIN_TOKEN, create_key
from tests.support.http import assert_error
from tests.support.mesh import Gateway, eventually, scripted_mesh

CHAT = "/v1/chat/completions"


def chat(text: str) -> dict[str, Any]:
    return {"model": "scripted", "messages": [{"role": "user", "content": text}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def mesh(tmp_path: Path, **gateway_settings: Any) -> AsyncIterator[Gateway]:
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN, **gateway_settings}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as gateway:
        yield gateway


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with mesh(tmp_path) as gateway:
        yield gateway


async def test_requests_without_a_valid_key_are_401(secured: Gateway) -> None:
    missing = await secured.client.post(CHAT, json=chat("hi"))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert missing.json()["error"]["type"] == "authentication_error"
    wrong = await secured.client.post(
        "/api/v1/ai/generate", json={"prompt": "hi"}, headers=bearer("lmk_0123456789ab_" + "x" * 43)
    )
    assert_error(wrong, 401, "invalid_api_key")
    garbage = await secured.client.get("/api/v1/models", headers=bearer("not-a-key"))
    assert_error(garbage, 401, "invalid_api_key")
    client = openai.AsyncOpenAI(base_url=f"{secured.client.base_url}/v1", api_key="sk-wrong", max_retries=0)
    async with client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    assert secured.backend.calls == []
    # Probes need no key.
    assert (await secured.client.get("/healthz")).status_code == 200


async def test_a_created_key_works_until_revoked(secured: Gateway) -> None:
    created = await secured.client.post(
        "/admin/v1/api-keys", json={"name": "billing-app", "rpm_limit": 100}, headers=ADMIN
    )
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith(f"lmk_{body['id']}_")
    assert (body["name"], body["rpm_limit"], body["tpm_limit"], body["revoked"]) == (
        "billing-app",
        100,
        0,
        False,
    )

    client = openai.AsyncOpenAI(base_url=f"{secured.client.base_url}/v1", api_key=key, max_retries=0)
    async with client:
        completion = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "echo: hi"

        listed = await secured.client.get("/admin/v1/api-keys", headers=ADMIN)
        assert [(k["id"], k["name"]) for k in listed.json()["keys"]] == [(body["id"], "billing-app")]
        assert "key" not in listed.json()["keys"][0]

        revoked = await secured.client.delete(f"/admin/v1/api-keys/{body['id']}", headers=ADMIN)
        assert (revoked.status_code, revoked.json()["revoked"]) == (200, True)
        with pytest.raises(openai.AuthenticationError):  # at once, though verified keys are cached
            await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}]
            )
    missing = await secured.client.delete("/admin/v1/api-keys/000000000000", headers=ADMIN)
    assert_error(missing, 404, "api_key_not_found")


async def test_admin_api_needs_the_admin_token(secured: Gateway, tmp_path: Path) -> None:
    assert_error(await secured.client.get("/admin/v1/api-keys"), 401, "invalid_admin_token")
    assert_error(
        await secured.client.get("/admin/v1/api-keys", headers=bearer("admin-secret-tokem")),
        401,
        "invalid_admin_token",
    )
    key = await create_key(secured)
    # An API key is not an admin token: only one with the admin scope may manage (its project's) keys.
    assert_error(
        await secured.client.get("/admin/v1/api-keys", headers=bearer(key)), 403, "insufficient_scope"
    )
    bad = await secured.client.post("/admin/v1/api-keys", json={"name": ""}, headers=ADMIN)
    assert_error(bad, 422, "invalid_request")
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/other.db", gateway_settings={"auth_enabled": True}
    ) as unset:
        assert_error(await unset.client.get("/admin/v1/api-keys", headers=ADMIN), 403, "admin_disabled")


async def test_keys_are_stored_hashed_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with mesh(tmp_path) as gateway:
        key = await create_key(gateway)
        assert (await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(key))).status_code == 200
        assert (
            await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(key + "x"))
        ).status_code == 401
    secret = key.split("_", 2)[2]
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute("SELECT id, secret_hash FROM api_keys").fetchall()
    assert len(rows) == 1 and rows[0][0] == key.split("_")[1]
    assert secret not in rows[0][1] and len(rows[0][1]) == 64
    assert secret.encode() not in (tmp_path / "s.db").read_bytes()
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "http request" in logged  # the requests were logged ...
    assert secret not in logged  # ... without the key


async def test_requests_per_minute_limit_is_429_with_retry_after(secured: Gateway) -> None:
    key = await create_key(secured, rpm_limit=2)
    other = await create_key(secured, name="other", rpm_limit=2)
    for _ in range(2):
        assert (await secured.client.post(CHAT, json=chat("hi"), headers=bearer(key))).status_code == 200
    limited = await secured.client.post(CHAT, json=chat("hi"), headers=bearer(key))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30  # a minute's worth is 2: one more in 30 s
    error = limited.json()["error"]
    assert (error["code"], error["type"]) == ("rate_limited", "rate_limit_error")
    assert "2 requests per minute" in error["message"]
    # Limits are per key; and our own API counts too.
    assert (await secured.client.post(CHAT, json=chat("hi"), headers=bearer(other))).status_code == 200
    assert_error(await secured.client.get("/api/v1/models", headers=bearer(key)), 429, "rate_limited")
    client = openai.AsyncOpenAI(base_url=f"{secured.client.base_url}/v1", api_key=key, max_retries=0)
    async with client:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}]
            )
    assert len(secured.backend.calls) == 3


async def test_tokens_per_minute_limit_counts_what_generations_used(secured: Gateway) -> None:
    key = await create_key(secured, tpm_limit=12)
    first = await secured.client.post(CHAT, json=chat("a b c d e f"), headers=bearer(key))
    assert first.json()["usage"]["total_tokens"] == 6 + 7  # over the minute's 12: the next must wait
    limited = await secured.client.post(CHAT, json=chat("hi"), headers=bearer(key))
    assert limited.status_code == 429
    assert "12 tokens per minute" in limited.json()["error"]["message"]
    assert int(limited.headers["retry-after"]) >= 1
    # Streams are counted too.
    streamer = await create_key(secured, name="streamer", tpm_limit=12)
    body = {**chat("a b c d e f"), "stream": True}
    async with secured.client.stream("POST", CHAT, json=body, headers=bearer(streamer)) as response:
        assert response.status_code == 200
        await response.aread()
    assert (await secured.client.post(CHAT, json=chat("hi"), headers=bearer(streamer))).status_code == 429


async def test_generations_over_the_concurrency_limit_are_shed_with_503(tmp_path: Path) -> None:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db",
        generation_timeout_s=5,
        gateway_settings={"max_concurrent_requests": 1},
    ) as gateway:
        # Failed requests give their slot back.
        for _ in range(3):
            assert (await gateway.client.post(CHAT, json={**chat("hi"), "model": "nope"})).status_code == 404
        slow = asyncio.create_task(gateway.client.post(CHAT, json={**chat("slow 10"), "stream": True}))
        await eventually(lambda: gateway.backend.calls, timeout_s=1.0)
        shed = await gateway.client.post("/api/v1/ai/generate", json={"prompt": "hi"})
        assert_error(shed, 503, "overloaded")
        assert shed.headers["retry-after"] == "1"
        assert (await gateway.client.get("/api/v1/models")).status_code == 200  # not a generation
        assert (await slow).status_code == 200
        assert (await gateway.client.post(CHAT, json=chat("hi"))).status_code == 200


async def test_bodies_over_the_limit_are_413(tmp_path: Path) -> None:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings={"max_body_bytes": 2048}
    ) as gateway:
        big = chat("x" * 4000)
        declared = await gateway.client.post(CHAT, json=big)
        assert declared.status_code == 413
        assert declared.json()["error"]["code"] == "request_too_large"
        assert declared.json()["error"]["request_id"] == declared.headers["x-request-id"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        chunked = await gateway.client.post(
            "/api/v1/ai/generate", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(chunked, 413, "request_too_large")
        assert gateway.backend.calls == []
        assert (await gateway.client.post(CHAT, json=chat("small"))).status_code == 200


async def test_keys_of_one_project_share_its_conversations_and_idempotency_keys(secured: Gateway) -> None:
    """Objects belong to the project, not to the key: a team's second key (its worker's, say) continues
    the conversations and sees the jobs of the first (other projects are apart: test_tenancy.py)."""
    alice, worker = await create_key(secured, name="alice"), await create_key(secured, name="worker")
    turn = {**chat("I am Alice"), "conversation_id": "c1"}
    assert (await secured.client.post(CHAT, json=turn, headers=bearer(alice))).status_code == 200
    shared = await secured.client.get("/api/v1/conversations/c1", headers=bearer(worker))
    assert shared.status_code == 200, shared.text
    assert [m["content"] for m in shared.json()["messages"]] == ["I am Alice", "echo: I am Alice"]
    follow_up = await secured.client.post(
        CHAT, json={**chat("who am I"), "conversation_id": "c1"}, headers=bearer(worker)
    )
    assert follow_up.status_code == 200
    assert [m.content for m in secured.backend.calls[-1].request.messages] == [
        "I am Alice",
        "echo: I am Alice",
        "who am I",
    ]

    submit = {"prompt": "job", "async": True}
    first = await secured.client.post(
        "/api/v1/ai/generate", json=submit, headers={**bearer(alice), "Idempotency-Key": "k1"}
    )
    again = await secured.client.post(
        "/api/v1/ai/generate", json=submit, headers={**bearer(worker), "Idempotency-Key": "k1"}
    )
    assert first.json()["job_id"] == again.json()["job_id"]


async def test_a_tokens_limit_holds_when_requests_are_unlimited(tmp_path: Path) -> None:
    async with mesh(tmp_path, default_rpm=0) as gateway:
        key = await create_key(gateway, tpm_limit=12)
        assert (
            await gateway.client.post(CHAT, json=chat("a b c d e f"), headers=bearer(key))
        ).status_code == 200
        limited = await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(key))
    assert limited.status_code == 429
    assert "12 tokens per minute" in limited.json()["error"]["message"]


async def test_a_rate_limit_outside_int32_is_a_bad_field_not_a_500(secured: Gateway) -> None:
    for field in ("rpm_limit", "tpm_limit"):
        response = await secured.client.post(
            "/admin/v1/api-keys", json={"name": "big", field: 2**31}, headers=ADMIN
        )
        error = assert_error(response, 422, "invalid_request")
        assert error["details"][0]["field"] == field


async def test_invalid_keys_are_throttled_per_address_and_a_repeated_one_costs_no_store_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"invalid_key_rpm": 3, "api_key_cache_s": 60}
    async with mesh(tmp_path, **settings) as gateway:
        key = await create_key(gateway)
        assert (await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(key))).status_code == 200
        with caplog.at_level(logging.INFO, logger="llmmesh.rpc"):
            repeated = [
                await gateway.client.post(CHAT, json=chat("hi"), headers=bearer("lmk_0_bad"))
                for _ in range(2)
            ]
            guesses = [
                await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(f"lmk_{n:012x}_" + "x" * 40))
                for n in range(2)
            ]
        for response in [*repeated, guesses[0]]:
            assert_error(response, 401, "invalid_api_key")
        # Those were this address's 3 failures a minute; the next guess is refused unchecked.
        limited = assert_error(guesses[1], 429, "rate_limited")
        assert "invalid API keys from this address" in limited["message"]
        assert int(guesses[1].headers["Retry-After"]) >= 1
        reads = [r for r in caplog.records if "VerifyApiKey" in str(getattr(r, "method", ""))]
        assert len(reads) == 2, "one for the repeated key (then remembered as bad), one for the first guess"
        # A key this gateway already verified is still served from its cache.
        assert (await gateway.client.post(CHAT, json=chat("hi"), headers=bearer(key))).status_code == 200

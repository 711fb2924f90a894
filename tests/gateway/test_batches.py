"""OpenAI's Batch API through the openai SDK over the whole mesh (real gateway, orchestrator workers,
store, inference on real sockets), on SQLite and PostgreSQL: files.create, batches.create,
batches.retrieve until done, files.content, batches.list and batches.cancel; every Batch object the
mesh returns is checked against OpenAI's published schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from services.common.registry import parse_registry
from tests.support.auth import ADMIN, ADMIN_TOKEN
from tests.support.fakes import ScriptedBackend, ScriptedEmbedder
from tests.support.mesh import SCRIPTED, Gateway, gemma_mesh, scripted_mesh
from tests.support.openai_schema import conforms

# Fast job timings; 16 jobs at a time, of which 8 may be batch lines (the default share, 0.5).
JOBS = {
    "job_concurrency": 16,
    "job_poll_s": 60,
    "job_heartbeat_s": 0.2,
    "job_lease_s": 2.0,
    "job_retry_backoff_s": 0.01,
    "job_retry_max_backoff_s": 0.02,
}
EMBEDDER = "tests.support.fakes:ScriptedEmbedder"
REGISTRY = {
    "models": {"scripted": {"backend": SCRIPTED}, "embedder": {"backend": EMBEDDER, "task": "embed"}},
    # The canned tier: "ping <n>" is answered without a model call (the queue's own cost).
    "canned": {"pings": [{"match": "^ping \\d+$", "reply": "pong"}]},
    "routes": {"default": [{"model": "scripted"}], "canned": [{"canned": "pings"}, {"model": "scripted"}]},
}
ENDED = ("completed", "failed", "expired", "cancelled")


def _mesh(database_url: str, **options: Any) -> Any:
    """scripted_mesh with the registry above: a scripted chat model and a scripted embedding model."""
    registry = parse_registry(REGISTRY)
    backends = [ScriptedBackend("scripted"), ScriptedEmbedder("embedder", registry.models["embedder"])]
    settings = {**JOBS, **options}
    return scripted_mesh(
        database_url, generation_timeout_s=5, registry=registry, backends=backends, **settings
    )


@pytest.fixture
async def mesh(database_url: str) -> AsyncIterator[Gateway]:
    async with _mesh(database_url) as gateway:
        yield gateway


@pytest.fixture
async def client(mesh: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{mesh.client.base_url}/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


def chat_line(custom_id: str, text: str, model: str = "scripted", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def upload(client: openai.AsyncOpenAI, lines: list[dict[str, Any]]) -> str:
    created = await client.files.create(
        file=("requests.jsonl", jsonl(lines), "application/jsonl"), purpose="batch"
    )
    assert created.purpose == "batch"
    return created.id


async def raw_batch(mesh: Gateway, batch_id: str) -> dict[str, Any]:
    """The batch as the wire carries it, checked against OpenAI's schema (the SDK's model would accept
    a null where the schema allows none)."""
    response = await mesh.client.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    conforms("Batch", body)
    return body


async def until_ended(mesh: Gateway, client: openai.AsyncOpenAI, batch_id: str, timeout_s: float = 60) -> Any:
    """batches.retrieve until the batch ended; each answer on the way checked against the schema."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        batch = await client.batches.retrieve(batch_id)
        await raw_batch(mesh, batch_id)
        if batch.status in ENDED or asyncio.get_running_loop().time() > deadline:
            return batch
        await asyncio.sleep(0.1)


async def first_answers(client: openai.AsyncOpenAI, batch_id: str) -> None:
    """Wait until the batch answered a line (bounded: its first lines take well under 10 s)."""
    for _ in range(200):
        if (await client.batches.retrieve(batch_id)).request_counts.completed:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} answered no line")


async def entries(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await client.files.content(file_id)
    return [json.loads(line) for line in content.text.splitlines()]


async def test_a_thousand_line_batch_on_the_canned_tier(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    count = 1000
    file_id = await upload(client, [chat_line(f"req-{i}", f"ping {i}", model="canned") for i in range(count)])
    created = await client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "nightly"},
    )
    assert created.status == "in_progress" and created.request_counts.total == count
    assert created.metadata == {"run": "nightly"} and created.endpoint == "/v1/chat/completions"
    done = await until_ended(mesh, client, created.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        count,
        count,
        0,
    )
    assert done.error_file_id is None and done.completed_at >= done.in_progress_at
    output = await entries(client, done.output_file_id)
    assert [e["custom_id"] for e in output] == [f"req-{i}" for i in range(count)], "each once, in input order"
    for entry in output[:: count // 20]:
        assert entry["error"] is None and entry["response"]["status_code"] == 200
        conforms("CreateChatCompletionResponse", entry["response"]["body"])
        assert entry["response"]["body"]["choices"][0]["message"]["content"] == "pong"
    assert len({e["id"] for e in output}) == count
    described = await client.files.retrieve(done.output_file_id)
    assert (described.purpose, described.bytes) == (
        "batch_output",
        len((await client.files.content(done.output_file_id)).content),
    )


async def test_each_endpoint_answers_as_its_live_route(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    live = await client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "same words"}]
    )
    cases = {
        "/v1/chat/completions": (chat_line("chat", "same words"), "CreateChatCompletionResponse"),
        "/v1/completions": (
            {
                "custom_id": "text",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"model": "scripted", "prompt": "a prompt"},
            },
            "CreateCompletionResponse",
        ),
        "/v1/embeddings": (
            {
                "custom_id": "vec",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "embedder", "input": ["one", "two"]},
            },
            "CreateEmbeddingResponse",
        ),
        "/v1/responses": (
            {
                "custom_id": "resp",
                "method": "POST",
                "url": "/v1/responses",
                "body": {"model": "scripted", "input": "a question", "store": False},
            },
            "Response",
        ),
    }
    for endpoint, (line, schema) in cases.items():
        batch = await client.batches.create(
            input_file_id=await upload(client, [line]),
            endpoint=endpoint,
            completion_window="24h",  # type: ignore[arg-type]
        )
        done = await until_ended(mesh, client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 1, (endpoint, done)
        [entry] = await entries(client, done.output_file_id)
        body = entry["response"]["body"]
        conforms(schema, body)
        if endpoint == "/v1/chat/completions":
            assert (
                body["choices"][0]["message"]["content"]
                == live.choices[0].message.content
                == "echo: same words"
            )
            assert body["usage"] == live.usage.model_dump(exclude_none=True) | {
                k: v for k, v in body["usage"].items() if k not in live.usage.model_dump(exclude_none=True)
            }
        if endpoint == "/v1/embeddings":
            assert len(body["data"]) == 2
        if endpoint == "/v1/responses":
            assert body["output"][0]["content"][0]["text"] == "echo: a question"


async def test_a_mixed_file_answers_good_lines_and_reports_bad_ones(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    lines = [
        chat_line("good-1", "first"),
        chat_line("unknown-model", "x", model="no-such-model"),
        {
            "custom_id": "bad-body",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "scripted"},
        },
        # Fails before any output on every attempt: retried as the queue's rules say, then reported.
        chat_line("provider-down", "PROVIDER-DOWN"),
        chat_line("good-2", "second"),
    ]
    batch = await client.batches.create(
        input_file_id=await upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = await until_ended(mesh, client, batch.id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 3)
    output = await entries(client, done.output_file_id)
    errors = {e["custom_id"]: e for e in await entries(client, done.error_file_id)}
    assert [e["response"]["body"]["choices"][0]["message"]["content"] for e in output] == [
        "echo: first",
        "echo: second",
    ]
    assert set(errors) == {"unknown-model", "bad-body", "provider-down"}
    statuses = {cid: e["response"]["status_code"] for cid, e in errors.items()}
    # The statuses the live route answers the same requests with.
    with pytest.raises(openai.APIStatusError) as live:
        await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "PROVIDER-DOWN"}]
        )
    assert statuses == {
        "unknown-model": 404,
        "bad-body": 400,
        "provider-down": live.value.status_code == 502 and 502,
    }
    for entry in errors.values():
        conforms("ErrorResponse", entry["response"]["body"])
        assert entry["response"]["body"]["error"]["request_id"] == entry["response"]["request_id"]
    assert errors["unknown-model"]["response"]["body"]["error"]["code"] == "model_not_found"
    assert "messages" in errors["bad-body"]["response"]["body"]["error"]["message"]
    # The failing line took every attempt the queue gives a job before it was reported.
    jobs = await mesh.client.get("/api/v1/jobs", params={"kind": "batch_line", "status": "FAILED"})
    assert jobs.status_code == 200, jobs.text
    attempts = [j["attempts"] for j in jobs.json()["data"] if j["attempts"]]
    assert attempts == [5]


async def test_a_file_that_cannot_run_is_refused_naming_its_lines(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    bad = (
        b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\nnot json\n'
        + jsonl(
            [
                chat_line("a", "again"),
                {"custom_id": "b", "method": "GET", "url": "/v1/chat/completions", "body": {}},
            ]
        )
    )
    with pytest.raises(openai.BadRequestError) as refused:
        await client.files.create(file=("bad.jsonl", bad, "application/jsonl"), purpose="batch")
    message = refused.value.body["message"]  # type: ignore[index]
    assert "line 2 is not valid JSON" in message
    assert "line 3: custom_id 'a' is already the custom_id of line 1" in message
    assert "line 4" in message and "method" in message
    # A file uploaded for another purpose is read at creation: a url other than the endpoint fails it.
    other = await client.files.create(
        file=("x.jsonl", jsonl([chat_line("a", "x")]), "application/jsonl"), purpose="user_data"
    )
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        await client.batches.create(
            input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert wrong_purpose.value.code == "invalid_batch_file"
    mismatched = await client.batches.create(
        input_file_id=await upload(client, [chat_line("a", "x"), chat_line("b", "y")]),
        endpoint="/v1/completions",
        completion_window="24h",
    )
    assert mismatched.status == "failed" and mismatched.failed_at is not None
    assert mismatched.errors is not None
    assert [(e.code, e.line, e.param) for e in mismatched.errors.data or []] == [
        ("mismatched_endpoint", 1, "url"),
        ("mismatched_endpoint", 2, "url"),
    ]
    await raw_batch(mesh, mismatched.id)
    with pytest.raises(openai.BadRequestError) as window:
        await client.batches.create(
            input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="48h"
        )  # type: ignore[arg-type]
    assert window.value.body["param"] == "completion_window"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )


async def test_cancel_stops_new_lines_and_keeps_the_partial_output(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    count = 60
    # "slow 6": 0.3 s each, 8 at a time: the cancel lands with most lines still queued.
    lines = [chat_line(f"c{i}", "slow 6") for i in range(count)]
    batch = await client.batches.create(
        input_file_id=await upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
    )
    await first_answers(client, batch.id)
    cancelling = await client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at is not None
    done = await until_ended(mesh, client, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    output = await entries(client, done.output_file_id)
    errors = await entries(client, done.error_file_id)
    assert 0 < len(output) < count and len(output) == done.request_counts.completed
    assert sorted(e["custom_id"] for e in output + errors) == sorted(f"c{i}" for i in range(count)), (
        "each once"
    )
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"} and all(
        e["response"] is None for e in errors
    )
    after = await client.batches.retrieve(batch.id)
    assert after.request_counts.completed == len(output), "no line started after the cancel ended"
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(batch.id)


async def test_live_traffic_is_served_while_a_batch_runs(database_url: str) -> None:
    # Two jobs at a time, one of them at most a batch line: the other slot stays for interactive work.
    async with (
        _mesh(database_url, job_concurrency=2) as mesh,
        openai.AsyncOpenAI(base_url=f"{mesh.client.base_url}/v1", api_key="unused", max_retries=0) as client,
    ):
        lines = [chat_line(f"b{i}", "slow 6") for i in range(20)]
        batch = await client.batches.create(
            input_file_id=await upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        await first_answers(client, batch.id)
        live = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "live"}]
        )
        assert live.choices[0].message.content == "echo: live"
        submitted = await mesh.client.post(
            "/api/v1/ai/generate", json={"prompt": "interactive", "async": True}
        )
        assert submitted.status_code == 202, submitted.text
        job_url = f"/api/v1/ai/status/{submitted.json()['job_id']}"
        for _ in range(200):
            job = (await mesh.client.get(job_url)).json()
            if job["status"] in ("SUCCEEDED", "FAILED"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "SUCCEEDED" and job["result"]["text"] == "echo: interactive"
        during = await client.batches.retrieve(batch.id)
        assert during.status == "in_progress" and during.request_counts.completed < 20, (
            "the interactive job, queued after 20 batch lines, ran before they were done"
        )
        running = await mesh.client.get("/api/v1/jobs", params={"kind": "batch_line", "status": "RUNNING"})
        assert len(running.json()["data"]) <= 1, "the batch stays within its share"
        assert (await until_ended(mesh, client, batch.id)).status == "completed"


async def test_batches_are_listed_paged_and_kept_to_their_project(database_url: str) -> None:
    async with _mesh(
        database_url, gateway_settings={"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    ) as mesh:
        keys = {}
        for project in ("alpha", "beta"):
            made = await mesh.client.post(
                "/admin/v1/projects", json={"id": project, "name": project}, headers=ADMIN
            )
            assert made.status_code == 201, made.text
            key = await mesh.client.post(
                "/admin/v1/api-keys", json={"name": "app", "project": project}, headers=ADMIN
            )
            keys[project] = key.json()["key"]
        base = f"{mesh.client.base_url}/v1"
        async with (
            openai.AsyncOpenAI(base_url=base, api_key=keys["alpha"], max_retries=0) as alpha,
            openai.AsyncOpenAI(base_url=base, api_key=keys["beta"], max_retries=0) as beta,
        ):
            file_id = await upload(alpha, [chat_line("a", "x")])
            made = [
                (
                    await alpha.batches.create(
                        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
                    )
                ).id
                for _ in range(3)
            ]
            first = await alpha.batches.list(limit=2)
            assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
            page = await mesh.client.get(
                "/v1/batches", params={"limit": 2}, headers={"Authorization": f"Bearer {keys['alpha']}"}
            )
            conforms("ListBatchesResponse", page.json())
            everything = [b.id async for b in alpha.batches.list(limit=2)]
            assert everything == made[::-1], "the SDK's paging walks every page"
            with pytest.raises(openai.NotFoundError):
                await beta.batches.retrieve(made[0])
            with pytest.raises(openai.NotFoundError):
                await beta.batches.cancel(made[0])
            with pytest.raises(openai.NotFoundError):
                await beta.batches.create(
                    input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            assert (await beta.batches.list()).data == []
            for _ in range(100):
                done = await alpha.batches.retrieve(made[0])
                if done.status in ENDED:
                    break
                await asyncio.sleep(0.1)
            assert done.status == "completed" and done.output_file_id is not None
            with pytest.raises(openai.NotFoundError):
                await beta.files.content(done.output_file_id)
            empty = await mesh.client.get("/v1/batches", headers={"Authorization": f"Bearer {keys['beta']}"})
            conforms("ListBatchesResponse", empty.json())


async def test_a_small_batch_on_the_local_model(tmp_path: Path, model_path: Path) -> None:
    """Ten lines on Gemma 3 270M, a few tokens each: each answer is the one the live route gives the
    same greedy request (the model runs deterministically), and the canned tier answers its line first."""
    questions = [f"Name a colour number {i}." for i in range(9)] + ["hello"]
    async with (
        gemma_mesh(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", model_path, **JOBS) as mesh,
        openai.AsyncOpenAI(base_url=f"{mesh.client.base_url}/v1", api_key="unused", max_retries=0) as client,
    ):
        lines = [
            chat_line(f"q{i}", text, model="default", max_tokens=8, temperature=0)
            for i, text in enumerate(questions)
        ]
        batch = await client.batches.create(
            input_file_id=await upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        done = await until_ended(mesh, client, batch.id, timeout_s=120)
        assert done.status == "completed" and done.request_counts.completed == len(questions), done
        output = await entries(client, done.output_file_id)
        assert [e["custom_id"] for e in output] == [f"q{i}" for i in range(len(questions))]
        answers = [e["response"]["body"]["choices"][0]["message"]["content"] for e in output]
        assert answers[-1] == "Hi there!"
        for entry in output:
            conforms("CreateChatCompletionResponse", entry["response"]["body"])
            assert entry["response"]["body"]["usage"]["completion_tokens"] <= 8
        live = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": questions[0]}], max_tokens=8, temperature=0
        )
        assert live.choices[0].message.content == answers[0] and answers[0]

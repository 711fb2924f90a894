"""Durable jobs and pipelines through the whole mesh: the gateway's REST, the orchestrator's real
workers, the store's queue, scripted models. Timings are shortened so leases and retries show
within a test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from llmmesh.store.v1 import store_pb2, store_pb2_grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.inference.config import InferenceSettings
from services.inference.errors import ProviderAuthFailed, ProviderUnavailable
from services.inference.server import create_server as create_inference
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.server import create_server as create_orchestrator
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.fakes import ScriptedBackend
from tests.support.http import assert_error
from tests.support.mesh import Gateway, channel_to, running, scripted_mesh, scripted_registry, serve_asgi
from tests.support.sessions import ANSWERS, LLM_OPTIONS, RENDERED, make_session, make_version

URL = "/api/v1/ai/generate"
FAST_JOBS = {
    "job_lease_s": 2.0,
    "job_heartbeat_s": 0.2,
    # Far longer than any test: a job must be claimed because the store announced it or said when
    # it falls due, never because a worker happened to poll.
    "job_poll_s": 60,
    "job_retry_backoff_s": 0.01,
    "job_retry_max_backoff_s": 0.05,
    "webhook_secret": "s3cret",
    # The receivers of these tests listen on loopback, which the webhook guard refuses by default.
    "webhook_allowed_networks": ["127.0.0.0/8"],
}
PIPELINES = {
    "think-then-answer": {
        "steps": [
            {"name": "think", "prompt": "List what matters for: {{ input.question }}"},
            {
                "name": "answer",
                "model": "cloud",
                "prompt": "Notes: {{ steps.think }} Answer: {{ input.question }}",
            },
        ]
    }
}
ENDED = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass
class Mesh:
    client: httpx.AsyncClient
    local: ScriptedBackend
    cloud: ScriptedBackend


async def start_mesh(tmp_path: Path, **settings: Any) -> AsyncIterator[Mesh]:
    registry = scripted_registry("local", "cloud", pipelines=PIPELINES)
    local, cloud = ScriptedBackend("local"), ScriptedBackend("cloud")
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db",
        generation_timeout_s=5,
        registry=registry,
        backends=[local, cloud],
        **{**FAST_JOBS, **settings},
    ) as gateway:
        yield Mesh(gateway.client, local, cloud)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    async for m in start_mesh(tmp_path):
        yield m


async def until_ended(client: httpx.AsyncClient, url: str, ended: set[str] = ENDED) -> dict[str, Any]:
    for _ in range(200):
        response = await client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ended:
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not end: {body}")


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def submit(
    mesh: Mesh, prompt: str, headers: dict[str, str] | None = None, **fields: Any
) -> httpx.Response:
    return await mesh.client.post(URL, json={"prompt": prompt, "async": True, **fields}, headers=headers)


async def test_an_async_generation_is_queued_and_its_result_fetched(mesh: Mesh) -> None:
    response = await submit(mesh, "explain tides")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/api/v1/ai/status/{accepted['job_id']}"
    assert response.headers["location"] == accepted["status_url"]
    assert accepted["request_id"] == response.headers["x-request-id"]
    status = await until_ended(mesh.client, accepted["status_url"])
    assert status["status"] == "SUCCEEDED", status
    assert status["kind"] == "generate" and status["attempts"] == 1
    assert status["result"]["text"] == "echo: explain tides"
    assert status["result"]["model"] == "local" and status["result"]["finish_reason"] == "stop"
    assert status["result"]["usage"]["completion_tokens"] == 3
    assert status["error"] is None
    assert status["created_at"] <= status["started_at"] <= status["completed_at"]
    assert len(mesh.local.calls) == 1


async def test_an_idempotency_key_returns_the_same_job_and_runs_it_once(mesh: Mesh) -> None:
    headers = {"Idempotency-Key": "order-7"}
    first = await submit(mesh, "explain tides", headers)
    second = await submit(mesh, "explain tides", headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    await until_ended(mesh.client, first.json()["status_url"])
    third = await submit(mesh, "explain tides", headers)
    assert third.json()["job_id"] == first.json()["job_id"], "also after it finished"
    assert len(mesh.local.calls) == 1, "paid for once"
    assert_error(await submit(mesh, "something else", headers), 409, "idempotency_key_reused")
    assert_error(await submit(mesh, "x", {"Idempotency-Key": "a b"}), 400, "invalid_idempotency_key")


async def test_a_bad_submission_fails_now_not_in_the_queue(mesh: Mesh) -> None:
    assert_error(await submit(mesh, "hi", model="nope"), 404, "model_not_found")
    assert_error(await submit(mesh, "hi", stream=True), 422, "invalid_request")
    assert_error(
        await mesh.client.post(URL, json={"prompt": "hi", "webhook_url": "http://x"}), 422, "invalid_request"
    )
    assert_error(await submit(mesh, "hi", webhook_url="ftp://example.com/x"), 422, "invalid_request")
    assert_error(await mesh.client.get("/api/v1/ai/status/unknown"), 404, "job_not_found")
    assert mesh.local.calls == []


async def test_transient_failures_are_retried_then_the_job_fails_with_the_last_error(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderUnavailable("engine restarting")
    response = await submit(mesh, "explain tides", model="local", max_attempts=2)
    status = await until_ended(mesh.client, response.json()["status_url"])
    assert status["status"] == "FAILED"
    assert status["attempts"] == 2
    assert status["error"]["code"] == "upstream_unavailable"
    # Each job attempt is a routed generation with its own retries (3 per tier).
    assert len(mesh.local.calls) == 6


async def test_a_job_that_fails_transiently_once_succeeds_on_a_later_attempt(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderUnavailable("engine restarting")
    response = await submit(mesh, "explain tides", model="local")
    await wait_until(lambda: len(mesh.local.calls) >= 3)
    mesh.local.refuse = None
    status = await until_ended(mesh.client, response.json()["status_url"])
    assert status["status"] == "SUCCEEDED" and status["attempts"] == 2
    assert status["result"]["text"] == "echo: explain tides"


async def test_an_idle_worker_wakes_for_a_retry_when_its_backoff_ends(tmp_path: Path) -> None:
    """No enqueue announces a retry: the worker sleeps until the time its claim said, not its poll."""
    async for m in start_mesh(tmp_path, job_poll_s=120, job_retry_backoff_s=0.3):
        m.local.refuse = ProviderUnavailable("engine restarting")
        response = await submit(m, "explain tides", model="local")
        await wait_until(lambda local=m.local: len(local.calls) >= 3)
        m.local.refuse = None
        status = await until_ended(m.client, response.json()["status_url"])  # 10 s at most, not 120
        assert status["status"] == "SUCCEEDED" and status["attempts"] == 2
        assert status["result"]["text"] == "echo: explain tides"


async def test_a_permanent_error_fails_the_job_without_retrying(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderAuthFailed("key refused")
    response = await submit(mesh, "explain tides", model="local")
    status = await until_ended(mesh.client, response.json()["status_url"])
    assert status["status"] == "FAILED" and status["attempts"] == 1
    assert status["error"]["code"] == "upstream_auth_failed"


async def test_cancelling_a_running_job_stops_its_generation(mesh: Mesh) -> None:
    response = await submit(mesh, "slow 200", model="local")
    url = response.json()["status_url"]
    await until_ended(mesh.client, url, {"RUNNING"})
    await wait_until(lambda: bool(mesh.local.calls))
    cancelled = await mesh.client.delete(url)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    # The worker notices at its next lease renewal (0.2 s here) and stops the model.
    await wait_until(lambda: mesh.local.calls[0].cancelled)
    assert (await mesh.client.get(url)).json()["status"] == "CANCELLED"
    assert_error(await mesh.client.post(f"{url}/cancel"), 409, "job_already_finished")


async def test_a_session_run_can_be_queued(tmp_path: Path) -> None:
    async for m in start_mesh(tmp_path):
        gateway = Gateway(m.client, m.local)
        await make_version(gateway, llm_options={**LLM_OPTIONS, "model": "local"})
        code = await make_session(gateway, ANSWERS)
        response = await m.client.post(f"/api/v1/sessions/{code}/llm", json={"async": True})
        assert response.status_code == 202, response.text
        status = await until_ended(m.client, response.json()["status_url"])
        assert status["status"] == "SUCCEEDED" and status["kind"] == "session"
        assert status["result"]["llm_result"] == f"echo: {RENDERED}"
        assert status["result"]["cached"] is False
        again = await m.client.post(f"/api/v1/sessions/{code}/llm")
        assert again.json()["cached"] is True, "the job stored the session's result"
        empty = await make_session(gateway, None)
        refused = await m.client.post(f"/api/v1/sessions/{empty}/llm", json={"async": True})
        assert_error(refused, 409, "no_answers")


@dataclass
class Receiver:
    """A webhook receiver that fails its first `failures` deliveries."""

    failures: int = 1
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def hook(self, request: Request) -> JSONResponse:
        self.deliveries.append((dict(request.headers), await request.body()))
        if len(self.deliveries) <= self.failures:
            return JSONResponse({"error": "not yet"}, status_code=503)
        return JSONResponse({"ok": True})


async def test_a_webhook_is_delivered_when_the_job_ends_and_retried_until_it_lands(mesh: Mesh) -> None:
    receiver = Receiver(failures=1)
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    async for base in serve_asgi(app):
        response = await submit(mesh, "explain tides", webhook_url=f"{base}/hook")
        url = response.json()["status_url"]
        await until_ended(mesh.client, url)
        for _ in range(100):
            status = (await mesh.client.get(url)).json()
            if status["webhook"]["status"] == "SUCCEEDED":
                break
            await asyncio.sleep(0.05)
    assert status["webhook"] == {"url": f"{base}/hook", "status": "SUCCEEDED", "attempts": 2, "error": None}
    assert len(receiver.deliveries) == 2
    headers, body = receiver.deliveries[-1]
    payload = json.loads(body)
    assert payload["event"] == "job.finished"
    assert payload["job"]["job_id"] == response.json()["job_id"]
    assert payload["job"]["status"] == "SUCCEEDED"
    assert payload["job"]["result"]["text"] == "echo: explain tides"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-llm-mesh-signature"] == expected


async def test_a_webhook_that_never_lands_is_recorded_without_touching_the_job(mesh: Mesh) -> None:
    response = await submit(
        mesh, "explain tides", webhook_url="http://127.0.0.1:9/unreachable", max_attempts=2
    )
    url = response.json()["status_url"]
    for _ in range(200):
        status = (await mesh.client.get(url)).json()
        if status.get("webhook", {}).get("status") == "FAILED":
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "SUCCEEDED", "the job's own outcome stands"
    assert status["webhook"]["status"] == "FAILED" and status["webhook"]["attempts"] == 5
    assert "unreachable" in status["webhook"]["error"]


async def test_a_pipeline_runs_its_steps_in_order_feeding_each_the_last_output(mesh: Mesh) -> None:
    listed = await mesh.client.get("/api/v1/pipelines")
    assert listed.json() == {
        "pipelines": [
            {
                "name": "think-then-answer",
                "steps": [{"name": "think", "model": None}, {"name": "answer", "model": "cloud"}],
            }
        ]
    }
    response = await mesh.client.post(
        "/api/v1/pipelines/think-then-answer/runs", json={"input": {"question": "why is the sea salty?"}}
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["location"] == f"/api/v1/pipelines/runs/{run['run_id']}"
    assert [s["status"] for s in run["steps"]] == ["QUEUED", "PENDING"]
    run = await until_ended(mesh.client, response.headers["location"])
    assert run["status"] == "SUCCEEDED", run
    think = "echo: List what matters for: why is the sea salty?"
    answer = f"echo: Notes: {think} Answer: why is the sea salty?"
    assert [(s["name"], s["status"], s["output"]) for s in run["steps"]] == [
        ("think", "SUCCEEDED", think),
        ("answer", "SUCCEEDED", answer),
    ]
    assert run["output"] == answer and run["stalled"] is False
    assert [c.request.messages[-1].content for c in mesh.local.calls] == [think.removeprefix("echo: ")]
    assert len(mesh.cloud.calls) == 1


async def test_a_failed_pipeline_run_resumes_from_the_failed_step(mesh: Mesh) -> None:
    mesh.cloud.refuse = ProviderAuthFailed("key refused")
    response = await mesh.client.post(
        "/api/v1/pipelines/think-then-answer/runs", json={"input": {"question": "q"}}
    )
    location = response.headers["location"]
    run = await until_ended(mesh.client, location)
    assert run["status"] == "FAILED"
    assert [s["status"] for s in run["steps"]] == ["SUCCEEDED", "FAILED"]
    assert run["steps"][1]["error"]["code"] == "upstream_auth_failed"
    assert_error(await mesh.client.post(f"{location}/cancel"), 409, "pipeline_run_already_finished")
    mesh.cloud.refuse = None
    resumed = await mesh.client.post(f"{location}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "RUNNING"
    run = await until_ended(mesh.client, location)
    assert run["status"] == "SUCCEEDED"
    assert len(mesh.local.calls) == 1, "the step that had succeeded did not run again"
    assert len(mesh.cloud.calls) == 2
    assert_error(await mesh.client.post(f"{location}/resume"), 409, "pipeline_run_not_resumable")


async def test_pipeline_errors_are_clear(mesh: Mesh) -> None:
    runs = "/api/v1/pipelines/{}/runs"
    assert_error(await mesh.client.post(runs.format("nope"), json={}), 404, "pipeline_not_found")
    missing = await mesh.client.post(runs.format("think-then-answer"), json={"input": {}})
    error = assert_error(missing, 400, "pipeline_template_error")
    assert "question" in error["message"]
    assert_error(await mesh.client.get("/api/v1/pipelines/runs/nope"), 404, "pipeline_run_not_found")


async def test_a_run_without_progress_is_reported_stalled(tmp_path: Path) -> None:
    async for m in start_mesh(tmp_path, job_concurrency=0, pipeline_stall_s=0.2):
        response = await m.client.post(
            "/api/v1/pipelines/think-then-answer/runs", json={"input": {"question": "q"}}
        )
        assert response.json()["stalled"] is False
        await asyncio.sleep(0.3)
        run = (await m.client.get(response.headers["location"])).json()
        assert run["status"] == "RUNNING" and run["stalled"] is True
        cancelled = await m.client.post(f"{response.headers['location']}/cancel")
        assert cancelled.json()["status"] == "CANCELLED"
        assert [s["status"] for s in cancelled.json()["steps"]] == ["CANCELLED", "PENDING"]


async def test_shutdown_lets_short_jobs_finish_and_gives_long_ones_back(tmp_path: Path) -> None:
    """SIGTERM's path (MeshServer.stop): stop claiming, finish within the grace period, release the rest."""
    registry = scripted_registry("local")
    backend = ScriptedBackend("local")
    inference, inference_port = create_inference(InferenceSettings(port=0), registry, [backend])
    store, store_port = create_store(
        StoreSettings(port=0, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    )
    orchestrator, orchestrator_port = create_orchestrator(
        OrchestratorSettings(
            port=0,
            inference_addr=f"127.0.0.1:{inference_port}",
            store_addr=f"127.0.0.1:{store_port}",
            job_shutdown_grace_s=0.5,
            **{k: v for k, v in FAST_JOBS.items() if k != "webhook_secret"},
        ),
        registry,
    )
    async with running(store), running(inference), channel_to(store_port) as store_channel:
        store_stub = store_pb2_grpc.StoreServiceStub(store_channel)
        await orchestrator.start()
        async with channel_to(orchestrator_port) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            jobs = []
            for prompt in ("slow 4", "slow 200"):  # 0.2 s: finishes in the grace; 10 s: does not
                submitted = await stub.SubmitGeneration(
                    orchestrator_pb2.SubmitGenerationRequest(
                        spec=orchestrator_pb2.GenerationSpec(prompt=prompt)
                    )
                )
                jobs.append(submitted.job.id)
        await wait_until(lambda: len(backend.calls) == 2)
        await orchestrator.stop()
        short, long = [(await store_stub.GetJob(store_pb2.GetJobRequest(job_id=j))).job for j in jobs]
        assert short.status == common_pb2.JOB_STATUS_SUCCEEDED
        assert long.status == common_pb2.JOB_STATUS_QUEUED, "given back for another replica, not left leased"
        assert long.attempts == 0, "an attempt cut short by shutdown is not counted"
        assert backend.calls[1].cancelled


async def test_jobs_and_pipeline_runs_are_listed_newest_first_with_filters_and_pages(mesh: Mesh) -> None:
    ids = [(await submit(mesh, f"job {n}")).json()["job_id"] for n in range(3)]
    for job_id in ids:
        await until_ended(mesh.client, f"/api/v1/ai/status/{job_id}")
    started = await mesh.client.post(
        "/api/v1/pipelines/think-then-answer/runs", json={"input": {"question": "q"}}
    )
    run = await until_ended(mesh.client, started.headers["location"])
    first = await mesh.client.get("/api/v1/jobs", params={"kind": "generate", "limit": 2})
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["object"] == "list" and page["request_id"] == first.headers["x-request-id"]
    assert [job["job_id"] for job in page["data"]] == ids[:0:-1]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[2], ids[1], True)
    assert page["data"][0]["result"]["text"] == "echo: job 2"
    rest = (
        await mesh.client.get("/api/v1/jobs", params={"kind": "generate", "limit": 2, "after": ids[1]})
    ).json()
    assert [job["job_id"] for job in rest["data"]] == ids[:1] and rest["has_more"] is False
    steps = (await mesh.client.get("/api/v1/jobs", params={"kind": "pipeline_step"})).json()
    assert [job["job_id"] for job in steps["data"]] == [s["job_id"] for s in reversed(run["steps"])]
    both = await mesh.client.get("/api/v1/jobs", params=[("kind", "generate"), ("kind", "pipeline_step")])
    assert len(both.json()["data"]) == 5
    assert (await mesh.client.get("/api/v1/jobs", params={"status": "FAILED"})).json()["data"] == []
    runs = (await mesh.client.get("/api/v1/pipelines/runs", params={"status": "SUCCEEDED"})).json()
    assert [r["run_id"] for r in runs["data"]] == [run["run_id"]]
    assert runs["data"][0]["steps"] == run["steps"] and runs["data"][0]["output"] == run["output"]
    assert (await mesh.client.get("/api/v1/pipelines/runs", params={"status": "FAILED"})).json()["data"] == []
    assert_error(await mesh.client.get("/api/v1/jobs", params={"status": "DONE"}), 422, "invalid_request")
    assert_error(await mesh.client.get("/api/v1/jobs", params={"limit": 0}), 422, "invalid_request")
    assert_error(await mesh.client.get("/api/v1/jobs", params={"after": "nope"}), 404, "job_not_found")
    missing = await mesh.client.get("/api/v1/pipelines/runs", params={"after": "nope"})
    assert_error(missing, 404, "pipeline_run_not_found")

"""Tenancy through the whole mesh: keys belong to projects, every object a caller creates belongs to
its key's project, another project's objects are 404 (never 403), keys carry scopes, and project
admins manage only their own project's keys. On SQLite and PostgreSQL, over real HTTP and gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import socketio
from websockets.asyncio.client import connect

from tests.support.auth import ADMIN, ADMIN_TOKEN
from tests.support.http import assert_error
from tests.support.mesh import Gateway, scripted_mesh, scripted_registry
from tests.support.sessions import LLM_OPTIONS, OPTIONS, SYSTEM, USER_TEMPLATE

PIPELINES = {
    "echo": {
        "steps": [
            {"name": "first", "prompt": "{{ input.q }}"},
            {"name": "then", "prompt": "{{ steps.first }}"},
        ]
    }
}
FAST_JOBS = {"job_poll_s": 60, "job_heartbeat_s": 0.2, "job_lease_s": 2.0, "job_retry_backoff_s": 0.01}


@dataclass
class Tenants:
    gateway: Gateway
    # A key of project "alpha" and one of project "beta", both with the default scopes.
    alpha: dict[str, str]
    beta: dict[str, str]

    @property
    def client(self) -> httpx.AsyncClient:
        return self.gateway.client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(gateway: Gateway, headers: dict[str, str] = ADMIN, **body: Any) -> dict[str, Any]:
    response = await gateway.client.post("/admin/v1/api-keys", json={"name": "app", **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_project(gateway: Gateway, project_id: str) -> None:
    response = await gateway.client.post(
        "/admin/v1/projects", json={"id": project_id, "name": f"Project {project_id}"}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] == project_id


@pytest.fixture
async def tenants(database_url: str) -> AsyncIterator[Tenants]:
    async with scripted_mesh(
        database_url,
        generation_timeout_s=5,
        registry=scripted_registry("scripted", pipelines=PIPELINES),
        gateway_settings={"auth_enabled": True, "admin_token": ADMIN_TOKEN},
        **FAST_JOBS,
    ) as gateway:
        for project in ("alpha", "beta"):
            await new_project(gateway, project)
        alpha = await new_key(gateway, project="alpha")
        beta = await new_key(gateway, project="beta")
        assert alpha["project"] == "alpha" and beta["project"] == "beta"
        assert alpha["scopes"] == ["generate", "sessions", "templates", "jobs"]
        yield Tenants(gateway, bearer(alpha["key"]), bearer(beta["key"]))


async def until_ended(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(200):
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not end")


async def test_a_job_is_seen_and_cancelled_only_from_its_own_project(tenants: Tenants) -> None:
    client = tenants.client
    # "slow 20": a second of output, so the job still runs while the other project tries to cancel it.
    submitted = await client.post(
        "/api/v1/ai/generate", json={"prompt": "slow 20", "async": True}, headers=tenants.alpha
    )
    assert submitted.status_code == 202, submitted.text
    url = f"/api/v1/ai/status/{submitted.json()['job_id']}"
    for attempt in (client.get(url, headers=tenants.beta), client.delete(url, headers=tenants.beta)):
        assert_error(await attempt, 404, "job_not_found")
    assert_error(await client.post(f"{url}/cancel", headers=tenants.beta), 404, "job_not_found")
    done = await until_ended(client, url, tenants.alpha)
    assert done["status"] == "SUCCEEDED", done
    assert done["result"]["text"]


async def test_the_job_and_run_lists_show_only_the_callers_project(tenants: Tenants) -> None:
    client = tenants.client
    job = await client.post(
        "/api/v1/ai/generate", json={"prompt": "hi", "async": True}, headers=tenants.alpha
    )
    run = await client.post("/api/v1/pipelines/echo/runs", json={"input": {"q": "hi"}}, headers=tenants.alpha)
    assert job.status_code == run.status_code == 202
    jobs = (await client.get("/api/v1/jobs", params={"kind": "generate"}, headers=tenants.alpha)).json()
    assert [j["job_id"] for j in jobs["data"]] == [job.json()["job_id"]]
    runs = (await client.get("/api/v1/pipelines/runs", headers=tenants.alpha)).json()
    assert [r["run_id"] for r in runs["data"]] == [run.json()["run_id"]]
    assert (await client.get("/api/v1/jobs", headers=tenants.beta)).json()["data"] == []
    assert (await client.get("/api/v1/pipelines/runs", headers=tenants.beta)).json()["data"] == []
    # another project's id is no cursor either
    after = {"after": job.json()["job_id"]}
    assert_error(await client.get("/api/v1/jobs", params=after, headers=tenants.beta), 404, "job_not_found")


async def test_idempotency_keys_are_per_project(tenants: Tenants) -> None:
    client = tenants.client
    ids = []
    for headers in (tenants.alpha, tenants.beta, tenants.alpha):
        response = await client.post(
            "/api/v1/ai/generate",
            json={"prompt": "same", "async": True},
            headers={**headers, "Idempotency-Key": "order-42"},
        )
        assert response.status_code in (200, 202), response.text
        ids.append(response.json()["job_id"])
    # Beta's key is not alpha's: its own job, not a view of alpha's; alpha's repeat is alpha's first.
    assert ids[0] != ids[1] and ids[2] == ids[0]


async def test_a_pipeline_run_is_seen_and_cancelled_only_from_its_own_project(tenants: Tenants) -> None:
    client = tenants.client
    started = await client.post(
        "/api/v1/pipelines/echo/runs", json={"input": {"q": "hi"}}, headers=tenants.alpha
    )
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    assert_error(await client.get(location, headers=tenants.beta), 404, "pipeline_run_not_found")
    assert_error(await client.post(f"{location}/cancel", headers=tenants.beta), 404, "pipeline_run_not_found")
    assert_error(await client.post(f"{location}/resume", headers=tenants.beta), 404, "pipeline_run_not_found")
    # Its second step, queued by the store when the first ended, is alpha's too: the run finishes.
    run = await until_ended(client, location, tenants.alpha)
    assert run["status"] == "SUCCEEDED", run
    assert [step["status"] for step in run["steps"]] == ["SUCCEEDED", "SUCCEEDED"]


async def make_template(client: httpx.AsyncClient, headers: dict[str, str], name: str = "triage") -> int:
    assert (await client.post("/api/v1/templates", json={"name": name}, headers=headers)).status_code == 201
    version = await client.post(
        f"/api/v1/templates/{name}/versions",
        json={
            "system_prompt": SYSTEM,
            "user_prompt_template": USER_TEMPLATE,
            "llm_options": LLM_OPTIONS,
            "options": OPTIONS,
        },
        headers=headers,
    )
    assert version.status_code == 201, version.text
    number = int(version.json()["number"])
    published = await client.post(f"/api/v1/templates/{name}/versions/{number}/publish", headers=headers)
    assert published.status_code == 200, published.text
    return number


async def test_templates_and_sessions_belong_to_their_project(tenants: Tenants) -> None:
    client, alpha, beta = tenants.client, tenants.alpha, tenants.beta
    number = await make_template(client, alpha)
    created = await client.post(
        "/api/v1/sessions", json={"template": "triage", "session_code": "shared-code"}, headers=alpha
    )
    assert created.status_code == 201, created.text
    answers = {"answers": [{"option": "fever", "value": "39 C"}]}
    assert (
        await client.put("/api/v1/sessions/shared-code/answers", json=answers, headers=alpha)
    ).status_code == 200

    # What the defect report saw beta do to alpha's objects: each is now a 404.
    version = f"/api/v1/templates/triage/versions/{number}"
    assert_error(await client.get("/api/v1/templates/triage", headers=beta), 404, "template_not_found")
    assert (await client.get("/api/v1/templates", headers=beta)).json()["data"] == []
    listed = (await client.get("/api/v1/templates", headers=alpha)).json()["data"]
    assert [t["name"] for t in listed] == ["triage"]
    assert_error(await client.get(f"{version}/options", headers=beta), 404, "template_not_found")
    assert_error(await client.post(f"{version}/archive", headers=beta), 404, "template_not_found")
    assert_error(await client.put(version, json={}, headers=beta), 404, "template_not_found")
    assert_error(
        await client.put("/api/v1/sessions/shared-code/answers", json={"answers": []}, headers=beta),
        404,
        "session_not_found",
    )
    assert_error(await client.get("/api/v1/sessions/shared-code", headers=beta), 404, "session_not_found")
    assert_error(
        await client.post("/api/v1/sessions/shared-code/llm", headers=beta), 404, "session_not_found"
    )

    # Names and codes are per project: beta has its own "triage" and its own "shared-code".
    await make_template(client, beta)
    theirs = await client.post(
        "/api/v1/sessions", json={"template": "triage", "session_code": "shared-code"}, headers=beta
    )
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["answers"] == []

    # Alpha's objects are as alpha left them.
    mine = await client.get("/api/v1/sessions/shared-code", headers=alpha)
    assert mine.json()["answers"] == [{"option": "fever", "label": "Fever", "value": "39 C"}]
    assert (await client.get(version, headers=alpha)).json()["status"] == "PUBLISHED"
    run = await client.post("/api/v1/sessions/shared-code/llm", headers=alpha)
    assert run.status_code == 200, run.text
    assert run.json()["cached"] is False


async def test_a_stored_conversation_belongs_to_its_project(tenants: Tenants) -> None:
    client = tenants.client
    chat = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "remember me"}],
        "conversation_id": "c1",
    }
    answer = await client.post("/v1/chat/completions", json=chat, headers=tenants.alpha)
    assert answer.status_code == 200, answer.text
    stored = await client.get("/api/v1/conversations/c1", headers=tenants.alpha)
    assert stored.status_code == 200, stored.text
    assert stored.json()["messages"][0]["content"] == "remember me"
    assert_error(
        await client.get("/api/v1/conversations/c1", headers=tenants.beta), 404, "conversation_not_found"
    )
    assert_error(
        await client.delete("/api/v1/conversations/c1", headers=tenants.beta), 404, "conversation_not_found"
    )
    assert (await client.get("/api/v1/conversations/c1", headers=tenants.alpha)).status_code == 200


async def test_scopes_limit_what_a_key_may_do(tenants: Tenants) -> None:
    client = tenants.client
    await make_template(client, tenants.alpha)
    front_end = bearer((await new_key(tenants.gateway, project="alpha", scopes=["sessions"]))["key"])
    # A front end's key reads a version's options and runs sessions...
    options = await client.get("/api/v1/templates/triage/versions/1/options", headers=front_end)
    assert options.status_code == 200, options.text
    created = await client.post("/api/v1/sessions", json={"template": "triage"}, headers=front_end)
    assert created.status_code == 201, created.text
    # ...and follows the job its queued run became (the status of what it may queue is its to read).
    code = created.json()["session_code"]
    answers = {"answers": [{"option": "fever"}]}
    assert (
        await client.put(f"/api/v1/sessions/{code}/answers", json=answers, headers=front_end)
    ).status_code == 200
    queued = await client.post(f"/api/v1/sessions/{code}/llm", json={"async": True}, headers=front_end)
    assert queued.status_code == 202, queued.text
    assert (await until_ended(client, queued.json()["status_url"], front_end))["status"] == "SUCCEEDED"
    # ...but cannot edit templates, chat freely, read jobs or use the admin API.
    for response in (
        await client.post("/api/v1/templates", json={"name": "other"}, headers=front_end),
        await client.post("/api/v1/templates/triage/versions/1/archive", headers=front_end),
        await client.post(
            "/v1/chat/completions", json={"model": "scripted", "messages": []}, headers=front_end
        ),
        await client.get("/api/v1/pipelines", headers=front_end),
        await client.get("/admin/v1/api-keys", headers=front_end),
    ):
        assert_error(response, 403, "insufficient_scope")
    assert (
        "'templates'"
        in (await client.post("/api/v1/templates", json={"name": "x"}, headers=front_end)).json()["error"][
            "message"
        ]
    )


async def test_a_project_admin_manages_only_its_own_projects_keys(tenants: Tenants) -> None:
    gateway, client = tenants.gateway, tenants.client
    admin = bearer((await new_key(gateway, project="alpha", scopes=["admin"]))["key"])
    beta_key = await new_key(gateway, project="beta")
    # Keys it creates are alpha's; beta is not a project it can see.
    made = await new_key(gateway, headers=admin, scopes=["generate"])
    assert made["project"] == "alpha" and made["scopes"] == ["generate"]
    elsewhere = await client.post("/admin/v1/api-keys", json={"name": "x", "project": "beta"}, headers=admin)
    assert_error(elsewhere, 404, "project_not_found")
    assert_error(await client.get("/admin/v1/api-keys?project=beta", headers=admin), 404, "project_not_found")
    listed = await client.get("/admin/v1/api-keys", headers=admin)
    assert listed.status_code == 200, listed.text
    assert {k["project"] for k in listed.json()["keys"]} == {"alpha"}
    assert_error(
        await client.delete(f"/admin/v1/api-keys/{beta_key['id']}", headers=admin), 404, "api_key_not_found"
    )
    assert_error(await client.get("/admin/v1/projects", headers=admin), 403, "operator_only")
    # The operator sees every project's keys, or one project's.
    everything = (await client.get("/admin/v1/api-keys", headers=ADMIN)).json()["keys"]
    assert {k["project"] for k in everything} == {"alpha", "beta"}
    only_beta = (await client.get("/admin/v1/api-keys", params={"project": "beta"}, headers=ADMIN)).json()[
        "keys"
    ]
    assert {k["project"] for k in only_beta} == {"beta"}
    projects = (await client.get("/admin/v1/projects", headers=ADMIN)).json()["projects"]
    assert [p["id"] for p in projects] == ["default", "alpha", "beta"]


async def test_bad_project_and_scope_requests_are_named(tenants: Tenants) -> None:
    client = tenants.client
    nowhere = await client.post("/admin/v1/api-keys", json={"name": "x", "project": "nowhere"}, headers=ADMIN)
    assert_error(nowhere, 404, "project_not_found")
    bad_scope = await client.post("/admin/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=ADMIN)
    assert_error(bad_scope, 400, "invalid_store_request")
    assert "'root'" in bad_scope.json()["error"]["message"]
    again = await client.post("/admin/v1/projects", json={"id": "alpha", "name": "again"}, headers=ADMIN)
    assert_error(again, 409, "project_exists")
    malformed = await client.post("/admin/v1/projects", json={"id": "Not Valid!", "name": "x"}, headers=ADMIN)
    assert_error(malformed, 422, "invalid_request")


async def test_realtime_turns_act_for_their_keys_project(tenants: Tenants) -> None:
    """A WebSocket turn and a Socket.IO turn (whose event tasks do not start in the connection's
    context) store their conversations in the key's project."""
    base = str(tenants.client.base_url)
    alpha_key = tenants.alpha["Authorization"].removeprefix("Bearer ")
    async with connect(f"{base.replace('http://', 'ws://')}/api/v1/chat/ws?api_key={alpha_key}") as socket:
        await socket.send(
            '{"type": "chat", "id": "t1", "model": "scripted", "content": "over ws", "conversation_id": "rt-ws"}'
        )
        while '"done"' not in (frame := str(await asyncio.wait_for(socket.recv(), 30))):
            assert '"error"' not in frame, frame
    done = asyncio.Event()
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("done", lambda data: done.set())
    await sio.connect(base, auth={"api_key": alpha_key}, wait_timeout=10)
    try:
        await sio.emit(
            "chat", {"id": "t2", "model": "scripted", "content": "over sio", "conversation_id": "rt-sio"}
        )
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await sio.disconnect()
    for conversation in ("rt-ws", "rt-sio"):
        url = f"/api/v1/conversations/{conversation}"
        mine = await tenants.client.get(url, headers=tenants.alpha)
        assert mine.status_code == 200, mine.text
        assert mine.json()["messages"][0]["content"] in ("over ws", "over sio")
        assert_error(await tenants.client.get(url, headers=tenants.beta), 404, "conversation_not_found")

"""Routes through the whole mesh over HTTP: canned replies, tiers, retries and fallbacks, the models list.

Two scripted models stand in for a local and a cloud model; each can be told to refuse with a given
error, so every fallback rule is exercised over the real gateway, orchestrator and inference servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.inference.errors import ModelBusy, ProviderAuthFailed, ProviderUnavailable
from tests.support.fakes import ScriptedBackend
from tests.support.http import assert_error, sse_events
from tests.support.mesh import eventually, scripted_mesh, scripted_registry

URL = "/api/v1/ai/generate"
CANNED = {"greetings": [{"match": r"^\s*(hi|hello|hey)\b[\s!.]*$", "reply": "Hello! How can I help?"}]}
ROUTES = {
    "default": [{"canned": "greetings"}, {"model": "local"}, {"model": "cloud"}],
    "local-only": [{"model": "local"}],
}


@dataclass
class Mesh:
    client: httpx.AsyncClient
    local: ScriptedBackend
    cloud: ScriptedBackend


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    registry = scripted_registry("local", "cloud", canned=CANNED, routes=ROUTES)
    local, cloud = ScriptedBackend("local"), ScriptedBackend("cloud")
    database = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    async with scripted_mesh(
        database, generation_timeout_s=5, registry=registry, backends=[local, cloud]
    ) as gateway:
        yield Mesh(gateway.client, local, cloud)


async def generate(mesh: Mesh, prompt: str, **fields: object) -> httpx.Response:
    return await mesh.client.post(URL, json={"prompt": prompt, **fields})


def served(response: httpx.Response) -> tuple[str, str, int]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["model"], body["route"], body["tier"]


async def test_a_canned_pattern_answers_without_calling_a_model(mesh: Mesh) -> None:
    response = await generate(mesh, "Hello!")
    assert served(response) == ("canned:greetings", "default", 0)
    assert response.json()["text"] == "Hello! How can I help?"
    assert response.json()["usage"]["completion_tokens"] == 0
    assert mesh.local.calls == mesh.cloud.calls == []


async def test_a_prompt_no_pattern_matches_runs_on_the_local_tier(mesh: Mesh) -> None:
    response = await generate(mesh, "hello, what is the capital of France?")
    assert served(response) == ("local", "default", 1)
    assert response.json()["text"] == "echo: hello, what is the capital of France?"
    assert len(mesh.local.calls) == 1
    assert mesh.cloud.calls == []


async def test_a_transient_local_failure_is_retried_then_falls_back_to_cloud(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderUnavailable("local engine restarting")
    response = await generate(mesh, "explain tides")
    assert served(response) == ("cloud", "default", 2)
    assert response.json()["text"] == "echo: explain tides"
    assert len(mesh.local.calls) == 3, "retried up to ORCHESTRATOR_RETRY_ATTEMPTS before falling back"
    assert len(mesh.cloud.calls) == 1


async def test_a_busy_local_model_falls_back_at_once(mesh: Mesh) -> None:
    mesh.local.refuse = ModelBusy("queue full")
    response = await generate(mesh, "explain tides")
    assert served(response) == ("cloud", "default", 2)
    assert len(mesh.local.calls) == 1


async def test_a_crashed_local_backend_falls_back(mesh: Mesh) -> None:
    response = await generate(mesh, "PROVIDER-DOWN please")  # the scripted crash happens on every tier
    error = assert_error(response, 502, "upstream_all_tiers_failed")
    assert (
        error["message"]
        == "route 'default': every tier failed (local: upstream_error; cloud: upstream_error)"
    )
    assert len(mesh.local.calls) == len(mesh.cloud.calls) == 1


async def test_a_transient_failure_that_passes_is_served_by_the_same_tier(mesh: Mesh) -> None:
    response = await generate(mesh, "DOWN-ONCE then fine")
    assert served(response) == ("local", "default", 1)
    assert len(mesh.local.calls) == 2
    assert mesh.cloud.calls == []


async def test_a_permanent_error_does_not_fall_back(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderAuthFailed("local (model local) refused the mesh's credentials")
    error = assert_error(await generate(mesh, "explain tides"), 502, "upstream_auth_failed")
    assert "credentials" in error["message"]
    assert len(mesh.local.calls) == 1
    assert mesh.cloud.calls == []


async def test_every_tier_failing_at_a_provider_is_one_502(mesh: Mesh) -> None:
    mesh.local.refuse = ProviderUnavailable("local down")
    mesh.cloud.refuse = ProviderUnavailable("cloud down")
    error = assert_error(await generate(mesh, "explain tides"), 502, "upstream_all_tiers_failed")
    assert error["message"] == (
        "route 'default': every tier failed (local: upstream_unavailable; cloud: upstream_unavailable)"
    )
    assert len(mesh.local.calls) == len(mesh.cloud.calls) == 3


async def test_every_tier_busy_is_one_503(mesh: Mesh) -> None:
    mesh.local.refuse = ModelBusy("queue full")
    mesh.cloud.refuse = ModelBusy("queue full")
    error = assert_error(await generate(mesh, "explain tides"), 503, "no_tier_available")
    assert "local: model_busy; cloud: model_busy" in error["message"]


async def test_no_fallback_once_the_stream_has_sent_text(mesh: Mesh) -> None:
    async with mesh.client.stream("POST", URL, json={"prompt": "fail midway", "stream": True}) as response:
        assert response.status_code == 200
        events = sse_events((await response.aread()).decode())
    assert events[:2] == [("delta", {"text": "partial "}), ("delta", {"text": "output "})]
    kind, data = events[2]
    assert kind == "error"
    assert data["error"]["code"] == "upstream_error"
    assert len(events) == 3
    assert mesh.cloud.calls == [], "another model's text is never spliced after the first's"


async def test_a_stream_that_fails_before_any_text_falls_back(mesh: Mesh) -> None:
    mesh.local.refuse = ModelBusy("queue full")
    async with mesh.client.stream("POST", URL, json={"prompt": "one two", "stream": True}) as response:
        events = sse_events((await response.aread()).decode())
    assert [e for e in events if e[0] == "delta"] == [
        ("delta", {"text": "echo: "}),
        ("delta", {"text": "one "}),
        ("delta", {"text": "two"}),
    ]
    assert events[-1][0] == "done"
    assert (events[-1][1]["model"], events[-1][1]["tier"]) == ("cloud", 2)


async def test_a_request_may_name_a_model_or_a_route(mesh: Mesh) -> None:
    assert served(await generate(mesh, "hi", model="cloud")) == ("cloud", "cloud", 0)
    assert served(await generate(mesh, "hi", model="local-only")) == ("local", "local-only", 0)
    mesh.local.refuse = ModelBusy("queue full")
    assert_error(await generate(mesh, "hi", model="local-only"), 429, "model_busy")


async def test_an_unknown_model_or_route_is_404_naming_the_known_ones(mesh: Mesh) -> None:
    error = assert_error(await generate(mesh, "hi", model="gpt-9"), 404, "model_not_found")
    assert error["message"] == "no model or route is named 'gpt-9'; known: cloud, default, local, local-only"


async def test_models_lists_models_routes_and_what_is_loaded(mesh: Mesh) -> None:
    response = await mesh.client.get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["models"] == [
        {
            "name": name,
            "backend": "tests.support.fakes:ScriptedBackend",
            "pool": "default",
            "capabilities": ["generate"],
            "loaded": True,
            "pool_reachable": True,
            "context_length": 0,
            "load": {
                "running": 0,
                "waiting": 0,
                "window_s": 300.0,
                "generations": 0,
                "failures": 0,
                "mean_ttft_s": 0.0,
                "mean_latency_s": 0.0,
                "tokens_per_s": 0.0,
            },
        }
        for name in ("local", "cloud")
    ]
    assert body["routes"] == [
        {
            "name": "default",
            "tiers": [
                {"kind": "canned", "name": "greetings"},
                {"kind": "model", "name": "local"},
                {"kind": "model", "name": "cloud"},
            ],
        },
        {"name": "local-only", "tiers": [{"kind": "model", "name": "local"}]},
    ]
    assert body["default_route"] == "default"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_models_report_each_models_running_requests_and_recent_generations(mesh: Mesh) -> None:
    async def load(name: str) -> dict[str, Any]:
        models = (await mesh.client.get("/api/v1/models")).json()["models"]
        return dict(next(m["load"] for m in models if m["name"] == name))

    slow = asyncio.create_task(generate(mesh, "slow 20", model="local"))
    await eventually(lambda: bool(mesh.local.calls), timeout_s=5)
    assert (await load("local"))["running"] == 1
    assert (await slow).status_code == 200
    assert (await generate(mesh, "three words here", model="local")).status_code == 200
    mesh.local.refuse = ProviderUnavailable("down")
    await generate(mesh, "x", model="local-only")
    mesh.local.refuse = None
    local = await load("local")
    assert (local["running"], local["waiting"]) == (0, 0)
    assert local["failures"] >= 1 and local["generations"] == 2 + local["failures"]
    # "slow 20": 20 tokens 50 ms apart; the echo's 4 tokens at once: about 24 tokens in 1 s
    assert 0.9 <= local["mean_latency_s"] * 2 <= 2.5
    assert 0 < local["mean_ttft_s"] < local["mean_latency_s"]
    assert 5 <= local["tokens_per_s"] <= 30
    assert (await load("cloud"))["generations"] == 0


async def test_embeddings_of_a_generation_model_are_a_400(mesh: Mesh) -> None:
    response = await mesh.client.post("/api/v1/ai/embeddings", json={"model": "local", "input": "x"})
    assert_error(response, 400, "unsupported_task")
    assert_error(
        await mesh.client.post("/api/v1/ai/embeddings", json={"model": "nope", "input": ["x"]}),
        404,
        "model_not_found",
    )
    assert_error(
        await mesh.client.post("/api/v1/ai/embeddings", json={"model": "local", "input": []}),
        422,
        "invalid_request",
    )

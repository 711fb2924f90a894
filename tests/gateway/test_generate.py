"""Gateway over real HTTP (uvicorn on port 0) in front of real orchestrator, inference and store servers.

The model is the scripted backend; the real model runs through the gateway in tests/e2e/test_mesh.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.gateway.config import GatewaySettings
from services.gateway.generate.protocol import MAX_PROMPT_CHARS
from tests.support.http import assert_error, sse_events
from tests.support.logs import errors_once_cancelled
from tests.support.mesh import Gateway, eventually, free_port, scripted_mesh, serve_app

URL = "/api/v1/ai/generate"
# One delta per word, relayed as fast as the services can write them: a client that leaves after the
# first finds the streams busy writing, not waiting for the model.
FAST_STREAM = " ".join(["word"] * 5000)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db") as mesh:
        yield mesh


async def test_generate_returns_the_models_text_and_usage(gateway: Gateway) -> None:
    response = await gateway.client.post(
        URL, json={"prompt": "Write a haiku about the sea", "max_tokens": 64}
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "text": "echo: Write a haiku about the sea",
        "tokens": 7,
        "model": "scripted",
        "route": "default",
        "tier": 0,
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": 6,
            "completion_tokens": 7,
            "total_tokens": 13,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
        "request_id": response.headers["x-request-id"],
    }
    (call,) = gateway.backend.calls
    assert call.request.sampling.max_tokens == 64
    assert call.request.messages[-1].content == "Write a haiku about the sea"


async def test_sampling_fields_reach_the_model(gateway: Gateway) -> None:
    response = await gateway.client.post(
        URL,
        json={"prompt": "hi", "system": "terse", "temperature": 0, "top_p": 0.5, "seed": 3, "stop": ["\n"]},
    )
    assert response.status_code == 200
    sampling = gateway.backend.calls[0].request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.seed, sampling.stop) == (0.0, 0.5, 3, ("\n",))
    assert [m.role for m in gateway.backend.calls[0].request.messages] == ["system", "user"]


async def test_callers_request_id_is_echoed_and_propagated(gateway: Gateway) -> None:
    response = await gateway.client.post(URL, json={"prompt": "hi"}, headers={"X-Request-ID": "client-42"})
    assert response.headers["x-request-id"] == "client-42"
    assert response.json()["request_id"] == "client-42"
    assert gateway.backend.calls[0].request_id == "client-42"


async def test_malformed_request_id_is_replaced(gateway: Gateway) -> None:
    response = await gateway.client.post(
        URL, json={"prompt": "hi"}, headers={"X-Request-ID": "bad id\twith spaces"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


async def test_stream_sends_one_event_per_delta_then_done(gateway: Gateway) -> None:
    async with gateway.client.stream("POST", URL, json={"prompt": "one two", "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    events = sse_events(body)
    assert events == [
        ("delta", {"text": "echo: "}),
        ("delta", {"text": "one "}),
        ("delta", {"text": "two"}),
        (
            "done",
            {
                "model": "scripted",
                "route": "default",
                "tier": 0,
                "tokens": 3,
                "finish_reason": "stop",
                "usage": {
                    "prompt_tokens": 2,
                    "completion_tokens": 3,
                    "total_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 0},
                },
                "request_id": response.headers["x-request-id"],
            },
        ),
    ]


async def test_stream_that_fails_at_once_gets_an_http_error_status(gateway: Gateway) -> None:
    response = await gateway.client.post(URL, json={"prompt": "hi", "model": "nope", "stream": True})
    assert_error(response, 404, "model_not_found")


async def test_stream_that_fails_midway_ends_with_an_error_event(gateway: Gateway) -> None:
    response = await gateway.client.post(URL, json={"prompt": "fail midway", "stream": True})
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[:2] == [("delta", {"text": "partial "}), ("delta", {"text": "output "})]
    kind, data = events[2]
    assert kind == "error"
    assert data["error"]["code"] == "upstream_error"
    assert data["error"]["message"] == "model scripted failed to generate a response"
    assert data["error"]["request_id"] == response.headers["x-request-id"]
    assert len(events) == 3


async def test_client_leaving_a_stream_cancels_the_generation(gateway: Gateway) -> None:
    async with gateway.client.stream("POST", URL, json={"prompt": "slow 200", "stream": True}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data"):
                break
    await eventually(lambda: gateway.backend.calls[0].cancelled)
    assert gateway.backend.calls[0].cancelled


async def test_a_stream_the_client_leaves_ends_without_an_error_in_any_service(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with gateway.client.stream("POST", URL, json={"prompt": FAST_STREAM, "stream": True}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data"):
                assert json.loads(line.removeprefix("data:")) == {"text": "echo: "}
                break
    assert await errors_once_cancelled(caplog) == []


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 422, "invalid_request", "prompt"),
        ({"prompt": ""}, 422, "invalid_request", "prompt"),
        ({"prompt": "   \n"}, 422, "invalid_request", "prompt"),
        ({"prompt": 42}, 422, "invalid_request", "prompt"),
        ({"prompt": ["a"]}, 422, "invalid_request", "prompt"),
        ({"prompt": "hi", "max_tokens": "64"}, 422, "invalid_request", "max_tokens"),
        ({"prompt": "hi", "max_tokens": -1}, 422, "invalid_request", "max_tokens"),
        ({"prompt": "hi", "max_tokens": 0}, 422, "invalid_request", "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10**6}, 422, "invalid_request", "max_tokens"),
        ({"prompt": "hi", "max_tokens": 1.5}, 422, "invalid_request", "max_tokens"),
        ({"prompt": "hi", "stream": "yes"}, 422, "invalid_request", "stream"),
        ({"prompt": "hi", "temperature": 5}, 422, "invalid_request", "temperature"),
        ({"prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, 422, "invalid_request", "stop"),
        ({"prompt": "hi", "prompt_typo": 1}, 422, "invalid_request", "prompt_typo"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, 422, "invalid_request", "prompt"),
    ],
    ids=[
        "missing-prompt",
        "empty-prompt",
        "blank-prompt",
        "prompt-int",
        "prompt-list",
        "max-tokens-string",
        "negative-max-tokens",
        "zero-max-tokens",
        "huge-max-tokens",
        "fractional-max-tokens",
        "stream-string",
        "temperature-range",
        "too-many-stops",
        "unknown-field",
        "oversize-prompt",
    ],
)
async def test_bad_input_is_a_4xx_json_error_naming_the_field(
    gateway: Gateway, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = await gateway.client.post(URL, json=body)
    error = assert_error(response, status, code)
    assert field in [detail["field"] for detail in error["details"]]
    assert "x" * 100 not in response.text, "the input is not echoed back"
    assert gateway.backend.calls == [], "nothing reaches the model"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"prompt": ', "application/json", 400, "invalid_json"),
        (b"not json at all", "application/json", 400, "invalid_json"),
        (b"", "application/json", 422, "invalid_request"),
        (b"[1, 2]", "application/json", 422, "invalid_request"),
        (b"prompt=hi", "application/x-www-form-urlencoded", 422, "invalid_request"),
    ],
    ids=["truncated-json", "garbage", "empty-body", "json-array", "form-encoded"],
)
async def test_unparseable_bodies_are_4xx_json_errors(
    gateway: Gateway, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await gateway.client.post(URL, content=content, headers={"content-type": content_type})
    assert_error(response, status, code)


async def test_unknown_model_is_404(gateway: Gateway) -> None:
    response = await gateway.client.post(URL, json={"prompt": "hi", "model": "nope"})
    error = assert_error(response, 404, "model_not_found")
    assert "nope" in error["message"]


async def test_deadline_is_504(gateway: Gateway) -> None:
    response = await gateway.client.post(URL, json={"prompt": "stall"})
    error = assert_error(response, 504, "generation_timeout")
    assert error["message"] == "the generation did not finish within 0.5 s"


async def test_unknown_route_and_wrong_method_are_json_errors(gateway: Gateway) -> None:
    assert_error(await gateway.client.get("/api/v1/nothing"), 404, "route_not_found")
    assert_error(await gateway.client.get(URL), 405, "method_not_allowed")


async def test_health_and_readiness(gateway: Gateway) -> None:
    live = await gateway.client.get("/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "services": {"orchestrator": "SERVING", "inference": "SERVING", "store": "SERVING"},
    }


async def test_openapi_documents_the_generate_endpoint(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    operation = spec["paths"][URL]["post"]
    assert set(operation["responses"]) >= {"200", "400", "404", "422", "429", "503", "504"}
    assert "prompt" in spec["components"]["schemas"]["GenerateRequest"]["required"]


async def test_mesh_down_is_503_and_not_ready(unused_port: int) -> None:
    down = f"127.0.0.1:{unused_port}"
    settings = GatewaySettings(port=0, orchestrator_addr=down, inference_addr=down, store_addr=down)
    async for base_url in serve_app(settings):
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            error = assert_error(await client.post(URL, json={"prompt": "hi"}), 503, "unavailable")
            assert "127.0.0.1" not in error["message"], "transport details stay in the log"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["status"] == "not_ready"
            assert set(ready.json()["services"].values()) == {"UNREACHABLE"}
            assert (await client.get("/healthz")).status_code == 200


async def test_readiness_probes_every_pool_of_the_registry(gateway: Gateway, tmp_path: Path) -> None:
    """A second pool of the registry is probed and reported too; down, its routes fall back, so the
    mesh stays ready."""
    pool_down = f"127.0.0.1:{free_port()}"
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "models:\n  local:\n    backend: tests.support.fakes:ScriptedBackend\n"
        "  gpu:\n    backend: tests.support.fakes:ScriptedBackend\n    pool: gpu\n"
        f"pools:\n  gpu: {pool_down}\n"
    )
    assert gateway.settings is not None
    async for base_url in serve_app(gateway.settings.model_copy(update={"registry_path": registry})):
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "services": {
            "orchestrator": "SERVING",
            "inference": "SERVING",
            "inference:gpu": "UNREACHABLE",
            "store": "SERVING",
        },
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (URL, {"prompt": "slow 60"}),
        ("/v1/chat/completions", {"model": "scripted", "messages": [{"role": "user", "content": "slow 60"}]}),
    ],
)
async def test_a_client_that_gives_up_on_an_unstreamed_generation_stops_the_model(
    tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    """Streams stop when their client leaves; an answer nobody waits for must stop too, not run on."""
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=30) as mesh:
        with pytest.raises(httpx.ReadTimeout):
            await mesh.client.post(path, json=body, timeout=1.0)  # reaches the model even when busy
        await eventually(lambda: bool(mesh.backend.calls) and mesh.backend.calls[-1].cancelled, timeout_s=1.5)
        (call,) = mesh.backend.calls
        assert call.cancelled, "the model stopped well before its 3 s of output"


@pytest.mark.parametrize(
    "content",
    [
        b'{"prompt": "\xff\xfe"}',  # not UTF-8
        ("[" * 100_000 + "]" * 100_000).encode(),  # nested deeper than the parser goes
        gzip.compress(b'{"prompt": "hi"}'),  # compressed (no Content-Encoding is accepted)
    ],
    ids=["not-utf8", "too-deep", "gzip"],
)
@pytest.mark.parametrize("path", [URL, "/v1/chat/completions"])
async def test_a_body_that_cannot_be_read_is_invalid_json(
    gateway: Gateway, path: str, content: bytes
) -> None:
    response = await gateway.client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.json()["error"]["message"].startswith("the request body is not valid JSON")


async def test_every_operation_with_a_body_documents_400_and_413(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()
    with_body = [
        (path, method)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]
    assert (URL, "post") in with_body and ("/v1/chat/completions", "post") in with_body
    for path, method in with_body:
        assert {"400", "413"} <= set(spec["paths"][path][method]["responses"]), (path, method)


async def test_a_not_found_message_does_not_echo_a_huge_id(gateway: Gateway) -> None:
    error = assert_error(await gateway.client.get(f"/api/v1/ai/status/{'j' * 5000}"), 404, "job_not_found")
    assert len(error["message"]) < 150 and "5000 characters" in error["message"]

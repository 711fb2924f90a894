"""CORS on the HTTP API over real HTTP: preflights for allowed and refused origins, actual cross-origin
requests (answers and errors) with the headers a page needs, and the settings that refuse what the
spec forbids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.gateway.config import GatewaySettings
from tests.support.auth import ADMIN_TOKEN
from tests.support.http import assert_error
from tests.support.mesh import Gateway, scripted_mesh

FRONT_END = "http://localhost:5173"
ELSEWHERE = "http://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = {
        "cors_allow_origins": [FRONT_END],
        "auth_enabled": True,
        "admin_token": ADMIN_TOKEN,
        "max_body_bytes": 2048,
    }
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", gateway_settings=settings
    ) as gateway:
        yield gateway


async def test_a_preflight_from_an_allowed_origin_is_answered_before_auth(mesh: Gateway) -> None:
    response = await mesh.client.options("/api/v1/ai/generate", headers={"Origin": FRONT_END, **PREFLIGHT})
    assert response.status_code == 200, response.text
    headers = response.headers
    assert headers["access-control-allow-origin"] == FRONT_END
    assert "POST" in headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in headers  # off unless set
    assert headers["x-request-id"]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
async def test_a_preflight_for_what_the_official_sdks_send_is_answered(mesh: Gateway, sdk: str) -> None:
    """The headers each SDK puts on every request (its platform headers, Anthropic's version and key),
    plus those it adds per call (retries, timeouts), read from the SDK itself."""
    import anthropic
    import openai

    client = (
        openai.OpenAI(api_key="k", base_url="http://127.0.0.1:1")
        if sdk == "openai"
        else anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:1")
    )
    # Accept and Content-Type are safelisted, User-Agent a browser sets itself.
    sent = {name.lower() for name in client.default_headers if name.lower() not in ("accept", "user-agent")}
    sent |= {"x-stainless-retry-count", "x-stainless-timeout"} | (
        {"x-api-key"} if sdk == "anthropic" else set()
    )
    client.close()
    preflight = {
        "Origin": FRONT_END,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": ", ".join(sorted(sent)),
    }
    response = await mesh.client.options("/v1/chat/completions", headers=preflight)
    assert response.status_code == 200, (sent, response.text)
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert sent <= allowed


async def test_a_preflight_from_another_origin_is_refused(mesh: Gateway) -> None:
    response = await mesh.client.options("/api/v1/ai/generate", headers={"Origin": ELSEWHERE, **PREFLIGHT})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_a_preflight_for_a_header_not_allowed_is_refused(mesh: Gateway) -> None:
    headers = {
        "Origin": FRONT_END,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-secret",
    }
    response = await mesh.client.options("/api/v1/ai/generate", headers=headers)
    assert response.status_code == 400


async def test_a_cross_origin_request_gets_its_answer_with_the_headers_a_page_may_read(mesh: Gateway) -> None:
    created = await mesh.client.post(
        "/admin/v1/api-keys", json={"name": "web"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    key = created.json()["key"]
    response = await mesh.client.post(
        "/api/v1/ai/generate",
        json={"prompt": "hello from a page"},
        headers={"Origin": FRONT_END, "Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "echo: hello from a page"
    assert response.headers["access-control-allow-origin"] == FRONT_END
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    assert "origin" in response.headers["vary"].lower()


async def test_errors_carry_the_cors_headers_so_the_page_can_read_them(mesh: Gateway) -> None:
    no_key = await mesh.client.post(
        "/api/v1/ai/generate", json={"prompt": "hi"}, headers={"Origin": FRONT_END}
    )
    assert_error(no_key, 401, "missing_api_key")
    assert no_key.headers["access-control-allow-origin"] == FRONT_END
    # refused by the request limits before any route runs
    too_large = await mesh.client.post(
        "/api/v1/ai/generate",
        content=b"x" * 4096,
        headers={"Origin": FRONT_END, "content-type": "application/json"},
    )
    assert_error(too_large, 413, "request_too_large")
    assert too_large.headers["access-control-allow-origin"] == FRONT_END


async def test_another_origin_gets_no_cors_headers(mesh: Gateway) -> None:
    response = await mesh.client.get("/healthz", headers={"Origin": ELSEWHERE})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_cors_is_off_by_default(tmp_path: Path) -> None:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}") as mesh:
        preflight = await mesh.client.options(
            "/api/v1/ai/generate", headers={"Origin": FRONT_END, **PREFLIGHT}
        )
        assert preflight.status_code == 405
        response = await mesh.client.get("/healthz", headers={"Origin": FRONT_END})
        assert "access-control-allow-origin" not in response.headers


async def test_credentials_with_a_listed_origin_are_allowed(tmp_path: Path) -> None:
    settings = {"cors_allow_origins": [FRONT_END], "cors_allow_credentials": True}
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path / 'store.db'}", gateway_settings=settings
    ) as mesh:
        response = await mesh.client.options(
            "/api/v1/ai/generate", headers={"Origin": FRONT_END, **PREFLIGHT}
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == FRONT_END
        assert response.headers["access-control-allow-credentials"] == "true"


def test_credentials_with_any_origin_are_refused() -> None:
    with pytest.raises(ValidationError, match="forbids"):
        GatewaySettings(cors_allow_origins=["*"], cors_allow_credentials=True)


@pytest.mark.parametrize("origin", ["localhost:5173", "http://localhost:5173/", "http://app.example/path"])
def test_an_origin_is_scheme_host_and_port_only(origin: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        GatewaySettings(cors_allow_origins=[origin])

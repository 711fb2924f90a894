"""The route label of the gateway's HTTP metrics: a route's template with the prefix its router was
included under, whichever way the installed FastAPI records routes (it includes routers lazily from
0.16x, keeping each route's own path)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from services.gateway.metrics import UNMATCHED, route_template


def labelled_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/ai/status/{job_id}")
    async def status(job_id: str, request: Request) -> str:
        return route_template(request.scope)

    @router.post("/sessions/{session_code}/llm")
    async def run(session_code: str, request: Request) -> str:
        return route_template(request.scope)

    app.include_router(router, prefix="/api/v1")
    app.include_router(router)  # the unprefixed copy, as the first users' session path
    nested = APIRouter(prefix="/outer")
    nested.include_router(router, prefix="/inner")
    app.include_router(nested)
    return app


@pytest.mark.parametrize(
    ("method", "path", "label"),
    [
        ("GET", "/api/v1/ai/status/abc123", "/api/v1/ai/status/{job_id}"),
        ("GET", "/ai/status/abc123", "/ai/status/{job_id}"),
        # an id that looks like the prefix changes nothing
        ("GET", "/api/v1/ai/status/api", "/api/v1/ai/status/{job_id}"),
        ("POST", "/api/v1/sessions/s-1/llm", "/api/v1/sessions/{session_code}/llm"),
        ("POST", "/sessions/s-1/llm", "/sessions/{session_code}/llm"),
        ("GET", "/outer/inner/ai/status/x", "/outer/inner/ai/status/{job_id}"),
    ],
)
async def test_a_route_is_labelled_by_its_full_template(method: str, path: str, label: str) -> None:
    transport = httpx.ASGITransport(labelled_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.request(method, path)
    assert response.status_code == 200, response.text
    assert response.json() == label


def test_a_request_no_route_answered_is_unmatched() -> None:
    assert route_template({"type": "http", "path": "/wp-admin/setup.php"}) == UNMATCHED

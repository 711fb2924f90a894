"""The API docs pages over real HTTP: Swagger UI and ReDoc reference only assets the gateway serves
itself (no CDN), and those assets are served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.mesh import Gateway, scripted_mesh


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}") as gateway:
        yield gateway


def referenced(html: str) -> list[str]:
    """Every URL a page loads or links to: src and href attributes, and `url: '...'` in its script."""
    found = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
    return [attribute or script for attribute, script in found]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"}),
        ("/redoc", {"/docs/assets/redoc.standalone.js"}),
    ],
)
async def test_docs_pages_load_only_local_assets(mesh: Gateway, page: str, assets: set[str]) -> None:
    response = await mesh.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = referenced(response.text)
    assert assets <= set(urls)
    assert "/openapi.json" in response.text
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert not re.search(r"https?://", response.text)
    for url in urls:
        if url == "/openapi.json":
            continue
        asset = await mesh.client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url


async def test_the_assets_are_javascript_and_css(mesh: Gateway) -> None:
    script = await mesh.client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert "SwaggerUIBundle" in script.text
    style = await mesh.client.get("/docs/assets/swagger-ui.css")
    assert style.headers["content-type"].startswith("text/css")
    assert (await mesh.client.get("/docs/assets/../app.py")).status_code == 404


async def test_the_schema_the_docs_read_is_served(mesh: Gateway) -> None:
    response = await mesh.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/ai/generate" in schema["paths"]
    assert not any(path.startswith("/docs") for path in schema["paths"])

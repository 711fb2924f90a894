"""What a person opens in a browser: the web console at / and the API docs (Swagger UI at /docs, ReDoc
at /redoc), every asset served by the gateway itself, so they work with no Internet access."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI and ReDoc as fastapi-offline packages them (MIT, depends on FastAPI alone): its static
# files only, served by our routes; the CDN copies FastAPI links to by default are never asked for.
DOCS_ASSETS = Path(str(files("fastapi_offline").joinpath("static")))
DOCS_ASSETS_PATH = "/docs/assets"
# The console: plain ES modules, a stylesheet and one string catalogue per language (i18n/*.json),
# packaged with the gateway; no build step.
CONSOLE_DIR = Path(__file__).resolve().parent / "console"
CONSOLE_PATH = "/console"


def install_docs(app: FastAPI) -> None:
    """/docs and /redoc from packaged assets (create the app with docs_url=None, redoc_url=None)."""
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{DOCS_ASSETS_PATH}/favicon.png"
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=favicon,
            oauth2_redirect_url="/docs/oauth2-redirect",
            # Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            redoc_js_url=f"{DOCS_ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
        # ReDoc's footer shows Redocly's logo from their CDN (and hides it when it fails to load):
        # images from elsewhere are not even asked for.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page


def install_console(app: FastAPI, api_prefix: str) -> None:
    """The console's page at / (its views are chosen client-side, by the URL's fragment) and its assets
    at /console. It calls only the public API, with the key its user gives it, so it can do nothing
    that key cannot; the page learns where the REST API is (GATEWAY_API_PREFIX) from a meta tag."""
    # The prefix is validated (letters, digits, ._~- and slashes), so it is safe in an attribute.
    page = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8").replace("{{API_PREFIX}}", api_prefix)
    app.mount(CONSOLE_PATH, StaticFiles(directory=CONSOLE_DIR), name="console")

    @app.get("/", include_in_schema=False)
    async def console() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

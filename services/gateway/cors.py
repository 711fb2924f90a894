"""CORS for the HTTP API, so web front ends on other origins can call it (off unless origins are set)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from services.common.request_id import HTTP_HEADER
from services.gateway.config import GatewaySettings

# Headers a page on another origin may read from a response: the request id it should quote when it
# reports a problem, and when to come back after a 429 or 503.
EXPOSED_HEADERS = [HTTP_HEADER, "Retry-After"]


def install_cors(app: FastAPI, settings: GatewaySettings) -> None:
    """Add Starlette's CORS middleware when GATEWAY_CORS_ALLOW_ORIGINS lists any origin.

    Added between the request-id middleware (outside, so a preflight's answer and every error carry
    the id) and the request limits (inside, so a refused body's 413 still carries the CORS headers a
    page needs to read it). Auth is a route dependency, so a preflight, which carries no key, is
    answered here before any route runs."""
    if not settings.cors_allow_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_allow_origins,
        allow_methods=settings.cors_allow_methods,
        allow_headers=settings.cors_allow_headers,
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=EXPOSED_HEADERS,
        max_age=settings.cors_max_age_s,
    )

"""Liveness and readiness of the gateway and the mesh behind it."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.health import probe

router = APIRouter(tags=["health"])


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    services: dict[str, str]


@router.get("/healthz", response_model=Liveness, summary="The gateway process is alive")
async def healthz() -> Liveness:
    """Liveness: the process answers. It asks no other service, so an outage behind the gateway
    never gets it restarted."""
    return Liveness(status="ok")


# What the mesh cannot serve without. The orchestrator's answer covers its own channels to the store
# and the default pool, so ready means a request through it would get through now. Another pool of
# the registry is probed and reported too, but one that is down only makes its routes fall back:
# taking every gateway out of rotation for it would turn a fallback into an outage.
REQUIRED = ("orchestrator", "inference", "store")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "The orchestrator, the store or the default pool is not SERVING",
        }
    },
    summary="The mesh can serve: orchestrator, store and default pool SERVING (every pool is reported)",
)
async def readyz(request: Request) -> JSONResponse:
    checks = request.app.state.health_checks
    statuses = await asyncio.gather(
        *(probe(channel, service=service) for channel, service in checks.values())
    )
    services = dict(zip(checks, statuses, strict=True))
    ready = all(services[name] == "SERVING" for name in REQUIRED)
    body = Readiness(status="ready" if ready else "not_ready", services=services)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

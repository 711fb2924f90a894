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
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Some service of the mesh is not SERVING"}},
    summary="Every service of the mesh is SERVING",
)
async def readyz(request: Request) -> JSONResponse:
    channels = request.app.state.health_channels
    statuses = await asyncio.gather(*(probe(channel) for channel in channels.values()))
    services = dict(zip(channels, statuses, strict=True))
    ready = all(status == "SERVING" for status in statuses)
    body = Readiness(status="ready" if ready else "not_ready", services=services)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

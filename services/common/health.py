"""Client side of grpc.health.v1: ask a service whether it is SERVING."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def probe(channel: grpc.aio.Channel, timeout_s: float = 1.0, service: str = "") -> str:
    """The service's serving status name (SERVING, NOT_SERVING, …), or UNREACHABLE."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

"""Client side of grpc.health.v1 and of the channels it travels on: ask a service whether it is
SERVING, and follow whether a channel can reach its peer right now."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_State = grpc.ChannelConnectivity


async def probe(channel: grpc.aio.Channel, timeout_s: float = 1.0, service: str = "") -> str:
    """The service's serving status name (SERVING, NOT_SERVING, …), or UNREACHABLE."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def reachability(channel: grpc.aio.Channel) -> AsyncIterator[bool]:
    """Whether a call over `channel` would reach its peer now: False first, then each change, until the
    channel closes. Connected is True; failing to connect (the peer is down, or it is back but the
    channel still waits out its reconnect backoff, during which calls fail at once) is False. An idle
    channel is asked to connect, so the answer stays current while no call uses the channel; while it
    connects the last answer stands."""
    reachable = False
    yield reachable
    state = channel.get_state(try_to_connect=True)
    while state is not _State.SHUTDOWN:
        if state is _State.READY or state is _State.TRANSIENT_FAILURE:
            now = state is _State.READY
            if now != reachable:
                reachable = now
                yield reachable
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)
    if reachable:
        yield False

"""The realtime chat WebSocket over a real socket (the `websockets` client) in front of the mesh."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.gateway.auth.admission import ANONYMOUS, Caller
from services.gateway.auth.limiter import LocalLimiter
from services.gateway.config import GatewaySettings
from services.gateway.realtime.session import ChatSession
from tests.support.auth import ADMIN, create_key
from tests.support.mesh import Gateway, eventually, scripted_mesh

PATH = "/api/v1/chat/ws"


def ws_url(gateway: Gateway, query: str = "") -> str:
    return f"{str(gateway.client.base_url).replace('http://', 'ws://')}{PATH}{query}"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=5) as mesh:
        yield mesh


async def send(socket: ClientConnection, frame: dict[str, Any]) -> None:
    await socket.send(json.dumps(frame))


async def receive(socket: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout=5))
    return frame


async def until(socket: ClientConnection, kind: str) -> list[dict[str, Any]]:
    """Frames up to and including the first of type `kind`."""
    frames = [await receive(socket)]
    while frames[-1]["type"] != kind:
        frames.append(await receive(socket))
    return frames


async def test_a_turn_streams_deltas_then_done_with_usage(gateway: Gateway) -> None:
    async with connect(ws_url(gateway)) as socket:
        await send(socket, {"type": "chat", "id": "t1", "content": "hello there", "max_tokens": 10})
        frames = await until(socket, "done")
    deltas, done = frames[:-1], frames[-1]
    assert [f["type"] for f in deltas] == ["delta"] * 3 and {f["id"] for f in deltas} == {"t1"}
    assert "".join(f["text"] for f in deltas) == "echo: hello there"
    assert done["text"] == "echo: hello there"
    assert (done["id"], done["finish_reason"], done["model"]) == ("t1", "stop", "scripted")
    assert done["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert done["request_id"]
    (call,) = gateway.backend.calls
    assert call.request.sampling.max_tokens == 10
    assert call.request_id == done["request_id"]  # the turn's id travels in metadata to the model


async def test_cancel_stops_the_model_and_the_socket_serves_the_next_turn(gateway: Gateway) -> None:
    async with connect(ws_url(gateway)) as socket:
        await send(socket, {"type": "chat", "id": "long", "content": "slow 40"})
        first = await receive(socket)
        assert first == {"type": "delta", "id": "long", "text": "t0 "}
        await send(socket, {"type": "cancel", "id": "long"})
        frames = await until(socket, "cancelled")
        assert frames[-1]["id"] == "long"
        assert len(frames) < 40  # it stopped well before the end
        await eventually(lambda: gateway.backend.calls[-1].cancelled, timeout_s=1.0)
        assert gateway.backend.calls[-1].cancelled
        await send(socket, {"type": "chat", "id": "next", "content": "still here"})
        assert (await until(socket, "done"))[-1]["text"] == "echo: still here"


async def test_errors_are_frames_and_the_socket_stays_usable(gateway: Gateway) -> None:
    async with connect(ws_url(gateway)) as socket:
        await socket.send("not json")
        bad_json = await receive(socket)
        assert (bad_json["type"], bad_json["error"]["code"]) == ("error", "invalid_frame")
        await send(socket, {"type": "chat", "content": "hi", "temperature": 9})
        bad_field = await receive(socket)
        assert (
            bad_field["error"]["code"] == "invalid_frame" and "temperature" in bad_field["error"]["message"]
        )
        await send(socket, {"type": "chat", "id": "m", "content": "hi", "model": "nope"})
        unknown = await receive(socket)
        assert (unknown["id"], unknown["error"]["code"]) == ("m", "model_not_found")
        assert unknown["error"]["request_id"]
        await send(socket, {"type": "chat", "id": "f", "content": "fail midway"})
        failed = await until(socket, "error")
        assert [f["type"] for f in failed] == ["delta", "delta", "error"]
        assert failed[-1]["error"]["code"] == "upstream_error"
        await send(socket, {"type": "chat", "id": "a", "content": "slow 5"})
        await send(socket, {"type": "chat", "id": "b", "content": "second"})
        frames = await until(socket, "done")
        busy = [f for f in frames if f["type"] == "error"]
        assert [(f["id"], f["error"]["code"]) for f in busy] == [("b", "turn_in_progress")]
        assert frames[-1]["id"] == "a"
        await send(socket, {"type": "cancel"})
        assert (await receive(socket))["error"]["code"] == "no_turn_in_progress"
        await send(socket, {"type": "ping"})
        assert await receive(socket) == {"type": "pong"}


async def test_conversation_turns_over_the_socket(gateway: Gateway) -> None:
    async with connect(ws_url(gateway)) as socket:
        await send(socket, {"type": "chat", "content": "one", "conversation_id": "ws-1"})
        await until(socket, "done")
        await send(socket, {"type": "chat", "content": "two", "conversation_id": "ws-1"})
        await until(socket, "done")
    assert [m.content for m in gateway.backend.calls[-1].request.messages] == ["one", "echo: one", "two"]


async def test_leaving_mid_turn_cancels_the_model_and_frees_the_slot(tmp_path: Path) -> None:
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db",
        generation_timeout_s=5,
        gateway_settings={"max_concurrent_requests": 1},
    ) as gateway:
        async with connect(ws_url(gateway)) as socket:
            await send(socket, {"type": "chat", "content": "slow 40"})
            await receive(socket)
            async with connect(ws_url(gateway)) as other:
                await send(other, {"type": "chat", "id": "x", "content": "hi"})
                assert (await receive(other))["error"]["code"] == "overloaded"
        await eventually(lambda: gateway.backend.calls[-1].cancelled, timeout_s=1.0)
        assert gateway.backend.calls[-1].cancelled
        assert (await gateway.client.post("/api/v1/ai/generate", json={"prompt": "hi"})).status_code == 200


async def test_the_handshake_needs_a_key_when_auth_is_on(tmp_path: Path) -> None:
    settings = {"auth_enabled": True, "admin_token": ADMIN["Authorization"].split()[1]}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as gateway:
        async with connect(ws_url(gateway)) as socket:
            refused = await receive(socket)
            assert refused["error"]["code"] == "missing_api_key"
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        key = await create_key(gateway, rpm_limit=1)
        async with connect(ws_url(gateway), additional_headers={"Authorization": f"Bearer {key}"}) as socket:
            await send(socket, {"type": "chat", "content": "hi"})
            assert (await until(socket, "done"))[-1]["text"] == "echo: hi"
            await send(socket, {"type": "chat", "content": "again"})
            limited = await receive(socket)
            assert limited["error"]["code"] == "rate_limited"  # each turn counts as a request
            assert limited["retry_after_s"] >= 1
        async with connect(ws_url(gateway, f"?api_key={key}")) as socket:  # browsers cannot set headers
            await send(socket, {"type": "ping"})
            assert await receive(socket) == {"type": "pong"}


async def test_a_key_revoked_while_its_socket_is_open_is_refused_its_next_turn(tmp_path: Path) -> None:
    settings = {"auth_enabled": True, "admin_token": ADMIN["Authorization"].split()[1]}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as gateway:
        key = await create_key(gateway)
        listed = await gateway.client.get("/admin/v1/api-keys", headers=ADMIN)
        key_id = listed.json()["keys"][0]["id"]
        async with connect(ws_url(gateway, f"?api_key={key}")) as socket:
            await send(socket, {"type": "chat", "id": "t1", "content": "hi"})
            assert (await until(socket, "done"))[-1]["text"] == "echo: hi"
            revoked = await gateway.client.delete(f"/admin/v1/api-keys/{key_id}", headers=ADMIN)
            assert revoked.status_code == 200, revoked.text
            await send(socket, {"type": "chat", "id": "t2", "content": "still there?"})
            refused = await receive(socket)
            assert (refused["type"], refused["id"], refused["error"]["code"]) == (
                "error",
                "t2",
                "invalid_api_key",
            )
        assert [call.request.prompt for call in gateway.backend.calls] != [] and len(
            gateway.backend.calls
        ) == 1


async def test_an_api_key_in_the_url_never_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn logs each handshake with its URL; a browser's ?api_key= is blanked there, valid or not."""
    settings = {"auth_enabled": True, "admin_token": "admin-secret-token"}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as gateway:
        key = await create_key(gateway)
        wrong = "lmk_000000000000_" + "x" * 40
        with caplog.at_level(logging.INFO, logger="uvicorn.error"):
            for presented in (key, wrong):
                async with connect(ws_url(gateway, f"?api_key={presented}&lang=ja")) as socket:
                    await send(socket, {"type": "ping"})
                    await receive(socket)
    handshakes = [r.getMessage() for r in caplog.records if "WebSocket" in r.getMessage()]
    assert len(handshakes) == 2, handshakes
    assert all("?api_key=[redacted]&lang=ja" in line for line in handshakes), handshakes
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert key not in logged and wrong not in logged


class LingeringOrchestrator:
    """Each stream answers at once, then lingers until released before it ends (as a gRPC stream's
    trailers can arrive after the client already saw the result)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def stream_generation(
        self, request: orchestrator_pb2.StreamGenerationRequest, timeout_s: float
    ) -> AsyncIterator[orchestrator_pb2.StreamGenerationResponse]:
        text = request.spec.messages[-1].content
        if text == "long":
            await asyncio.Event().wait()  # runs until cancelled
        yield orchestrator_pb2.StreamGenerationResponse(
            result=common_pb2.GenerationResult(
                text=text, model="scripted", finish_reason=common_pb2.FINISH_REASON_STOP
            )
        )
        await self.release.wait()


async def test_a_turn_started_right_after_done_keeps_its_own_bookkeeping() -> None:
    """Turn 1's cleanup runs after turn 2 began: it must not end turn 2 (which let a third turn in,
    refused turn 2's cancel, and freed a slot twice)."""

    async def admit(caller: Caller) -> None:
        return None

    limiter = LocalLimiter(GatewaySettings(max_concurrent_requests=4))
    admission = SimpleNamespace(admit=admit, charge=lambda caller, usage: None, limiter=limiter)
    orchestrator = LingeringOrchestrator()
    sent: list[dict[str, Any]] = []

    async def send(frame: dict[str, Any]) -> None:
        sent.append(frame)

    session = ChatSession(
        ANONYMOUS,
        admission,  # type: ignore[arg-type]
        GatewaySettings(),
        orchestrator,  # type: ignore[arg-type]
        send,
    )

    async def frames(count: int) -> list[dict[str, Any]]:
        await eventually(lambda: len(sent) >= count)
        return sent[:count]

    await session.receive_text(json.dumps({"type": "chat", "id": "t1", "content": "short"}))
    assert (await frames(1))[-1]["type"] == "done"  # turn 1 answered; its stream still lingers
    await session.receive_text(json.dumps({"type": "chat", "id": "t2", "content": "long"}))
    await eventually(lambda: limiter.concurrency.in_flight == 1)
    orchestrator.release.set()  # now turn 1's cleanup runs, while turn 2 is in progress
    await asyncio.sleep(0.05)
    assert limiter.concurrency.in_flight == 1, "turn 2 still holds its slot"
    await session.receive_text(json.dumps({"type": "chat", "id": "t3", "content": "short"}))
    refused = (await frames(2))[-1]
    assert (refused["type"], refused["id"], refused["error"]["code"]) == ("error", "t3", "turn_in_progress")
    await session.receive_text(json.dumps({"type": "cancel", "id": "t2"}))
    cancelled = (await frames(3))[-1]
    assert (cancelled["type"], cancelled["id"]) == ("cancelled", "t2")
    assert limiter.concurrency.in_flight == 0
    await asyncio.wait_for(session.close(), 5)  # the client leaves

"""The realtime chat over Socket.IO, driven by python-socketio's AsyncClient (what Flask-SocketIO
apps and socket.io-client speak) in front of the whole mesh with the real Gemma 3 270M model; auth and
cross-origin checks run on scripted models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import socketio
from websockets.asyncio.client import connect

from services.common.registry import parse_registry
from services.inference.backends import create_backend
from services.inference.config import InferenceSettings
from tests.support.auth import ADMIN_TOKEN, create_key
from tests.support.mesh import Gateway, scripted_mesh

MODEL = "gemma-3-270m"
# Long enough that a cancel sent after the first delta always lands mid-turn.
LONG_TOKENS = 200
LONG = {"content": "Write a long story about a lighthouse keeper and the sea.", "max_tokens": LONG_TOKENS}
Event = tuple[str, dict[str, Any]]


@pytest.fixture
async def gateway(tmp_path: Path, model_path: Path) -> AsyncIterator[Gateway]:
    """The mesh with the real model on the default route (the scripted one beside it, unused), in
    the deterministic mode: the doors' answers to one greedy request are compared whole."""
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 1024, "deterministic": True}
    registry = parse_registry(
        {
            "models": {"scripted": {"backend": "tests.support.fakes:ScriptedBackend"}, MODEL: gemma},
            "routes": {"default": [{"model": MODEL}]},
        }
    )
    settings = InferenceSettings(port=0)
    backend = create_backend(MODEL, registry.models[MODEL], settings)
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=60, registry=registry, models=[backend]
    ) as mesh:
        yield mesh


class Client:
    """A python-socketio AsyncClient that queues every event it receives, in order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.refusals: list[Any] = []

        @self.sio.on("*")
        async def received(event: str, data: dict[str, Any]) -> None:
            await self.events.put((event, data))

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.refusals.append(data)

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    async def receive(self) -> Event:
        return await asyncio.wait_for(self.events.get(), timeout=60)

    async def until(self, kind: str) -> list[Event]:
        """Events up to and including the first named `kind`."""
        events = [await self.receive()]
        while events[-1][0] != kind:
            events.append(await self.receive())
        return events


@asynccontextmanager
async def client(gateway: Gateway, **options: Any) -> AsyncIterator[Client]:
    """Connected to the gateway's /socket.io (polling first, then upgraded, as socket.io-client does)."""
    connection = Client()
    await connection.sio.connect(str(gateway.client.base_url), wait_timeout=10, **options)
    try:
        yield connection
    finally:
        await connection.sio.disconnect()


def ws_url(gateway: Gateway) -> str:
    return f"{str(gateway.client.base_url).replace('http://', 'ws://')}/api/v1/chat/ws"


async def websocket_turn(gateway: Gateway, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """One turn over the WebSocket: its frames up to done."""
    async with connect(ws_url(gateway)) as socket:
        await socket.send(json.dumps({"type": "chat", **frame}))
        frames = [json.loads(await asyncio.wait_for(socket.recv(), 60))]
        while frames[-1]["type"] != "done":
            frames.append(json.loads(await asyncio.wait_for(socket.recv(), 60)))
    return frames


async def test_a_turn_streams_deltas_then_done_as_the_websocket_does(gateway: Gateway) -> None:
    turn = {"id": "t1", "content": "Name three colours.", "max_tokens": 12, "temperature": 0}
    async with client(gateway) as connection:
        await connection.emit("chat", turn)
        events = await connection.until("done")
    deltas, (kind, done) = events[:-1], events[-1]
    assert kind == "done" and deltas
    assert {event for event, _ in deltas} == {"delta"}
    assert all(data == {"type": "delta", "id": "t1", "text": data["text"]} for _, data in deltas)
    assert "".join(data["text"] for _, data in deltas) == done["text"] and done["text"].strip()
    assert (done["type"], done["id"], done["model"], done["route"]) == ("done", "t1", MODEL, "default")
    assert done["tokens"] == done["usage"]["completion_tokens"] <= 12
    assert done["usage"]["prompt_tokens"] > 3 and done["request_id"]
    # The WebSocket's frames for the same (greedy) turn: delta frames of the same shape and text (how
    # the tokens split into deltas depends on their timing: see INFERENCE_STREAM_INTERVAL_MS), then
    # the same done payload.
    frames = await websocket_turn(gateway, turn)
    assert {frame["type"] for frame in frames[:-1]} == {"delta"}
    assert all(frame == {"type": "delta", "id": "t1", "text": frame["text"]} for frame in frames[:-1])
    assert "".join(frame["text"] for frame in frames[:-1]) == done["text"]
    without_id = {k: v for k, v in done.items() if k != "request_id"}
    assert {k: v for k, v in frames[-1].items() if k != "request_id"} == without_id


async def test_one_turn_at_a_time_and_errors_are_events(gateway: Gateway) -> None:
    async with client(gateway) as connection:
        await connection.emit("chat", {"id": "a", "content": "Count to twenty.", "max_tokens": 24})
        await connection.emit("chat", {"id": "b", "content": "second"})
        events = await connection.until("done")
        refused = [data for event, data in events if event == "error"]
        assert [(e["id"], e["error"]["code"]) for e in refused] == [("b", "turn_in_progress")]
        assert refused[0]["error"]["message"] and refused[0]["error"]["request_id"]
        assert events[-1][1]["id"] == "a"
        await connection.emit("cancel")
        (event, nothing) = await connection.receive()
        assert (event, nothing["error"]["code"]) == ("error", "no_turn_in_progress")
        await connection.emit("chat", {"content": "hi", "temperature": 9})
        bad_field = (await connection.receive())[1]["error"]
        assert bad_field["code"] == "invalid_frame" and "temperature" in bad_field["message"]
        await connection.emit("chat", "not an object")
        assert (await connection.receive())[1]["error"]["code"] == "invalid_frame"
        await connection.emit("shout", {"content": "hi"})
        unknown = (await connection.receive())[1]["error"]
        assert unknown["code"] == "invalid_frame" and "'shout'" in unknown["message"]
        await connection.emit("chat", {"id": "m", "content": "hi", "model": "nope"})
        missing = (await connection.receive())[1]
        assert (missing["id"], missing["error"]["code"]) == ("m", "model_not_found")
        await connection.emit("ping")
        assert await connection.receive() == ("pong", {"type": "pong"})


async def test_cancel_mid_turn_ends_it_and_the_next_turn_runs(gateway: Gateway) -> None:
    async with client(gateway) as connection:
        await connection.emit("chat", {"id": "long", **LONG})
        first = await connection.receive()
        assert first[0] == "delta"
        await connection.emit("cancel", {"id": "long"})
        events = await connection.until("cancelled")
        assert {event for event, _ in events[:-1]} <= {"delta"}  # no done: the turn was stopped
        assert len(events) < LONG_TOKENS
        cancelled = events[-1][1]
        assert cancelled == {"type": "cancelled", "id": "long", "request_id": cancelled["request_id"]}
        await connection.emit("chat", {"id": "next", "content": "Say yes.", "max_tokens": 4})
        done = (await connection.until("done"))[-1][1]
        assert (done["id"], done["tokens"] <= 4) == ("next", True)


async def test_leaving_mid_turn_frees_the_generation_slot(tmp_path: Path, model_path: Path) -> None:
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 1024}
    registry = parse_registry({"models": {MODEL: gemma}})
    backend = create_backend(MODEL, registry.models[MODEL], InferenceSettings(port=0))
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db",
        generation_timeout_s=60,
        registry=registry,
        models=[backend],
        gateway_settings={"max_concurrent_requests": 1},
    ) as mesh:
        async with client(mesh) as connection:
            await connection.emit("chat", LONG)
            assert (await connection.receive())[0] == "delta"
            async with client(mesh) as other:
                await other.emit("chat", {"id": "x", "content": "hi"})
                assert (await other.receive())[1]["error"]["code"] == "overloaded"
        # The slot comes back once the server has seen the client leave (a moment after).
        for _ in range(100):
            answer = await mesh.client.post("/api/v1/ai/generate", json={"prompt": "hi", "max_tokens": 2})
            if answer.status_code != 503:
                break
            await asyncio.sleep(0.05)
        assert answer.status_code == 200, answer.text


async def test_a_conversation_goes_on_across_the_websocket_and_socketio(gateway: Gateway) -> None:
    first = await websocket_turn(
        gateway, {"content": "My name is Ada.", "conversation_id": "door-1", "max_tokens": 8}
    )
    async with client(gateway) as connection:
        await connection.emit(
            "chat", {"content": "What is my name?", "conversation_id": "door-1", "max_tokens": 8}
        )
        second = (await connection.until("done"))[-1][1]
    stored = (await gateway.client.get("/api/v1/conversations/door-1")).json()
    assert stored["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first[-1]["text"]},
        {"role": "user", "content": "What is my name?"},
        {"role": "assistant", "content": second["text"]},
    ]


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Gateway]:
    """Scripted models (no turn here needs the real one), API keys required."""
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=settings) as mesh:
        yield mesh


async def refusal(gateway: Gateway, **options: Any) -> dict[str, Any]:
    """What connect_error carries when the gateway refuses the connection."""
    connection = Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await connection.sio.connect(str(gateway.client.base_url), wait_timeout=10, **options)
    (refused,) = connection.refusals
    assert isinstance(refused, dict) and refused["message"] == refused["data"]["error"]["message"]
    frame: dict[str, Any] = refused["data"]
    assert (frame["type"], frame["id"]) == ("error", None) and frame["error"]["request_id"]
    return frame["error"]


async def test_a_connection_needs_a_valid_key_when_auth_is_on(guarded: Gateway) -> None:
    missing = await refusal(guarded)
    assert missing["code"] == "missing_api_key" and "API key is required" in missing["message"]
    wrong = await refusal(guarded, auth={"api_key": "lmk_000000000000_" + "x" * 40})
    assert wrong["code"] == "invalid_api_key" and "not valid" in wrong["message"]
    assert (await refusal(guarded, auth={"api_key": 42}))["code"] == "missing_api_key"
    key = await create_key(guarded, rpm_limit=1)
    async with client(guarded, auth={"api_key": key}) as connection:  # socket.io-client's `auth`
        await connection.emit("chat", {"content": "hi"})
        assert (await connection.until("done"))[-1][1]["text"] == "echo: hi"
        await connection.emit("chat", {"content": "again"})
        limited = (await connection.receive())[1]
        assert limited["error"]["code"] == "rate_limited"  # each turn counts as a request
        assert limited["retry_after_s"] >= 1
    async with client(guarded, headers={"Authorization": f"Bearer {key}"}) as connection:
        await connection.emit("ping")
        assert await connection.receive() == ("pong", {"type": "pong"})


async def test_only_the_gateways_own_origin_by_default(guarded: Gateway, tmp_path: Path) -> None:
    """A page on another site cannot open a connection (its Origin is refused) unless listed in
    GATEWAY_SOCKETIO_CORS_ORIGINS; clients that send no Origin (servers, scripts) are not affected."""
    handshake = "/socket.io/?EIO=4&transport=polling"
    own = str(guarded.client.base_url)
    other = await guarded.client.get(handshake, headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 400
    same = await guarded.client.get(handshake, headers={"Origin": own})
    assert same.status_code == 200 and same.headers["access-control-allow-origin"] == own
    assert "access-control-allow-credentials" not in same.headers  # keys are never cookies
    assert (await guarded.client.get(handshake)).status_code == 200
    listed = {"socketio_cors_origins": ["https://app.example"]}
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/o.db", gateway_settings=listed) as mesh:
        allowed = await mesh.client.get(handshake, headers={"Origin": "https://app.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await mesh.client.get(handshake, headers={"Origin": "https://elsewhere.example"})
        assert refused.status_code == 400

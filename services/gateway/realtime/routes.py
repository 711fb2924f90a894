"""The realtime chat WebSocket: one turn at a time, token deltas as they come, cancel mid-turn.

Authenticated at the handshake (Authorization header, or `api_key` query parameter for browsers,
which cannot set headers on a WebSocket); each turn counts against the key's rate limits and takes
one of the gateway's generation slots while it runs. An error in a turn is an `error` frame; the
socket stays open for the next turn. uvicorn sends protocol pings every GATEWAY_WS_PING_S; a
`ping` frame is answered with `pong` for clients that want an application-level check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import grpc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from pydantic import TypeAdapter, ValidationError

from services.common import results
from services.common.errors import MeshError
from services.common.request_id import bound_request_id, new_request_id
from services.common.tenancy import set_project
from services.gateway.auth.admission import Admission, Caller, bearer_token, check_scope
from services.gateway.calls import sampling_params
from services.gateway.errors import GatewayError, InvalidFrame, NoTurn, TurnInProgress, error_body
from services.gateway.metrics import WEBSOCKETS_OPEN
from services.gateway.realtime.protocol import (
    CancelFrame,
    ChatFrame,
    ClientFrame,
    DeltaFrame,
    DoneFrame,
    PingFrame,
)
from services.gateway.streaming import close_stream
from services.orchestrator.client import OrchestratorClient

log = logging.getLogger("llmmesh.gateway.realtime")
router = APIRouter(tags=["realtime"])
_FRAME: TypeAdapter[ChatFrame | CancelFrame | PingFrame] = TypeAdapter(ClientFrame)
# Close code for a refused handshake (RFC 6455: policy violation).
_POLICY_VIOLATION = 1008
# Close code when the mesh cannot check the key now (RFC 6455 registry: try again later).
_TRY_AGAIN_LATER = 1013


class _Socket:
    """One client connection: serialises sends, runs at most one turn."""

    def __init__(self, websocket: WebSocket, caller: Caller) -> None:
        self.websocket = websocket
        self.caller = caller
        self.admission: Admission = websocket.app.state.admission
        self.settings = websocket.app.state.settings
        self.orchestrator: OrchestratorClient = websocket.app.state.orchestrator
        self._send_lock = asyncio.Lock()
        self.turn: asyncio.Task[None] | None = None
        self.turn_id: str | None = None
        self.slot = ""

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(frame, separators=(",", ":")))

    async def send_error(self, error: MeshError, request_id: str, turn_id: str | None = None) -> None:
        frame = {"type": "error", "id": turn_id, **error_body(error.code, error.message, request_id)}
        if isinstance(error, GatewayError) and "Retry-After" in error.headers:
            frame["retry_after_s"] = int(error.headers["Retry-After"])
        await self.send(frame)

    async def serve(self) -> None:
        try:
            while True:
                await self.receive()
        except WebSocketDisconnect:
            pass
        finally:
            if self.turn is not None:
                self.turn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.turn

    async def receive(self) -> None:
        text = await self.websocket.receive_text()
        request_id = new_request_id()
        try:
            frame = _FRAME.validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
            message = (
                "the frame is not valid JSON"
                if first.get("type") == "json_invalid"
                else f"{where}: {first.get('msg')}"
            )
            await self.send_error(InvalidFrame(f"invalid frame: {message}"), request_id)
            return
        if isinstance(frame, PingFrame):
            await self.send({"type": "pong"})
        elif isinstance(frame, CancelFrame):
            if self.turn is not None and (frame.id is None or frame.id == self.turn_id):
                self.turn.cancel()
            else:
                await self.send_error(NoTurn("no turn with that id is in progress"), request_id, frame.id)
        elif self.turn is not None:
            await self.send_error(
                TurnInProgress("a turn is in progress: wait for it or cancel it"), request_id, frame.id
            )
        else:
            try:
                await self.admission.admit(self.caller)
                self.slot = await self.admission.limiter.acquire()
            except MeshError as error:
                await self.send_error(error, request_id, frame.id)
                return
            self.turn_id = frame.id
            self.turn = asyncio.create_task(self.run_turn(frame, request_id))

    async def run_turn(self, frame: ChatFrame, request_id: str) -> None:
        this = asyncio.current_task()
        try:
            with bound_request_id(request_id):
                await self._generate(frame, request_id, this)
        except asyncio.CancelledError:
            self._end_turn(this)
            with contextlib.suppress(Exception):
                await self.send({"type": "cancelled", "id": frame.id, "request_id": request_id})
        except MeshError as error:
            self._end_turn(this)
            with contextlib.suppress(Exception):
                await self.send_error(error, request_id, frame.id)
        except Exception:  # the connection went away mid-send, or a bug: never leave the slot held
            log.exception("realtime turn failed", extra={"request_id": request_id})
        finally:
            self._end_turn(this)

    def _end_turn(self, turn: asyncio.Task[Any] | None) -> None:
        """Free the slot and the socket for the next turn: before the turn's last frame is sent, so
        a client that answers that frame at once is never told a turn is still in progress. Only
        `turn` itself, once: by the time a turn's own cleanup runs, the client may have started the
        next one, whose bookkeeping and slot are not this turn's to end."""
        if turn is not None and self.turn is turn:
            self.turn = None
            self.turn_id = None
            self.admission.limiter.release_soon(self.slot)

    async def _generate(self, frame: ChatFrame, request_id: str, this: asyncio.Task[Any] | None) -> None:
        messages = (
            [m.to_proto() for m in frame.messages]
            if frame.messages is not None
            else [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=frame.content or "")]
        )
        spec = orchestrator_pb2.GenerationSpec(
            model=frame.model or "",
            messages=messages,
            params=sampling_params(frame, frame.max_tokens, frame.stop),
            conversation_id=frame.conversation_id or "",
        )
        stream = self.orchestrator.stream_generation(
            orchestrator_pb2.StreamGenerationRequest(spec=spec), self.settings.request_timeout_s
        )
        try:
            async for event in stream:
                if event.HasField("delta"):
                    await self.send(DeltaFrame(id=frame.id, text=event.delta.text).model_dump())
                else:
                    self.admission.charge(self.caller, event.result.usage)
                    generation = results.Generation.from_proto(event.result)
                    done = DoneFrame(**generation.model_dump(), id=frame.id, request_id=request_id)
                    self._end_turn(this)
                    await self.send(done.model_dump())
        finally:
            await close_stream(stream)


@router.websocket("/api/v1/chat/ws")
async def chat_socket(websocket: WebSocket) -> None:
    """Realtime chat; see the module docstring and README "Realtime chat (WebSocket)"."""
    admission: Admission = websocket.app.state.admission
    token = bearer_token(websocket.headers.get("authorization")) or websocket.query_params.get("api_key")
    await websocket.accept()
    request_id = new_request_id()
    try:
        caller = await admission.identify(token, websocket.client.host if websocket.client else "unknown")
        check_scope(caller, ("generate",))
    except MeshError as error:
        body = {"type": "error", "id": None, **error_body(error.code, error.message, request_id)}
        await websocket.send_text(json.dumps(body))
        unauthenticated = error.status == grpc.StatusCode.UNAUTHENTICATED
        await websocket.close(
            code=_POLICY_VIOLATION if unauthenticated else _TRY_AGAIN_LATER, reason=error.code
        )
        return
    # Every turn of this socket acts for the key's project (its tasks start in this context).
    set_project(caller.project_id)
    with WEBSOCKETS_OPEN.track_inprogress():
        await _Socket(websocket, caller).serve()

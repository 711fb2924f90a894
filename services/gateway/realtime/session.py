"""One realtime chat connection, whatever carries it: frames in, one turn at a time, frames out.

The WebSocket (routes.py) and Socket.IO (socketio_app.py) are only transports: each authenticates its
connection with Admission.identify, hands every incoming frame to a ChatSession, and gives it a `send`
that writes one outgoing frame (a JSON text frame, or a Socket.IO event named after the frame's type).
Everything a turn does — its admission under the key's rate limits, its generation slot, the stream of
deltas, done, cancel, errors and the bookkeeping of which turn is in progress — happens here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from pydantic import TypeAdapter, ValidationError

from services.common import results
from services.common.errors import MeshError
from services.common.request_id import bound_request_id, new_request_id
from services.common.tenancy import bound_project
from services.gateway.auth.admission import Admission, Caller, check_scope
from services.gateway.calls import sampling_params
from services.gateway.config import GatewaySettings
from services.gateway.errors import GatewayError, InvalidFrame, NoTurn, TurnInProgress, error_body
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
_FRAME: TypeAdapter[ChatFrame | CancelFrame | PingFrame] = TypeAdapter(ClientFrame)
# The `type` of every frame a client may send (on Socket.IO: the event names).
CLIENT_FRAME_TYPES = ("chat", "cancel", "ping")
# How much of a client's unknown event name an error message quotes.
_QUOTED_CHARS = 80

# Writes one outgoing frame to the client.
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def chat_caller(admission: Admission, token: str | None, client: str) -> Caller:
    """The caller a connection's key names, if it may chat (the generate scope); raises otherwise."""
    caller = await admission.identify(token, client)
    check_scope(caller, ("generate",))
    return caller


def refusal_frame(error: MeshError, request_id: str) -> dict[str, Any]:
    """The `error` frame a connection that cannot be served gets (bad key, mesh unreachable)."""
    return {"type": "error", "id": None, **error_body(error.code, error.message, request_id)}


def _invalid(exc: ValidationError) -> InvalidFrame:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "frame"
    message = (
        "the frame is not valid JSON"
        if first.get("type") == "json_invalid"
        else f"{where}: {first.get('msg')}"
    )
    return InvalidFrame(f"invalid frame: {message}")


class ChatSession:
    """One client connection: serialises sends, runs at most one turn."""

    def __init__(
        self,
        caller: Caller,
        admission: Admission,
        settings: GatewaySettings,
        orchestrator: OrchestratorClient,
        send: Send,
        identify: Callable[[], Awaitable[Caller]] | None = None,
    ) -> None:
        """`identify`: who the connection's key names now (checked again before every turn, so a key
        revoked while the socket is open stops being served); None: `caller` for the whole connection."""
        self.caller = caller
        self._identify = identify
        self.admission = admission
        self.settings = settings
        self.orchestrator = orchestrator
        self._send = send
        self._send_lock = asyncio.Lock()
        # A transport may hand frames over concurrently: each is handled whole, in arrival order.
        self._receive_lock = asyncio.Lock()
        self.turn: asyncio.Task[None] | None = None
        self.turn_id: str | None = None
        self.slot = ""
        self._closed = False

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._send(frame)

    async def send_error(self, error: MeshError, request_id: str, turn_id: str | None = None) -> None:
        frame = {"type": "error", "id": turn_id, **error_body(error.code, error.message, request_id)}
        if isinstance(error, GatewayError) and "Retry-After" in error.headers:
            frame["retry_after_s"] = int(error.headers["Retry-After"])
        await self.send(frame)

    async def receive_text(self, text: str) -> None:
        """A frame as JSON text (the WebSocket's)."""
        request_id = new_request_id()
        try:
            frame = _FRAME.validate_json(text)
        except ValidationError as exc:
            await self.send_error(_invalid(exc), request_id)
            return
        await self.handle(frame, request_id)

    async def receive_event(self, event: str, data: Any) -> None:
        """A frame as an event and its payload (Socket.IO's): the event name is the frame's type."""
        request_id = new_request_id()
        if event not in CLIENT_FRAME_TYPES:
            quoted = event[:_QUOTED_CHARS]
            error = InvalidFrame(f"invalid frame: unknown event {quoted!r}: send chat, cancel or ping")
            await self.send_error(error, request_id)
            return
        if data is None:
            data = {}
        if not isinstance(data, dict):
            await self.send_error(
                InvalidFrame(f"invalid frame: the {event} payload must be an object"), request_id
            )
            return
        try:
            frame = _FRAME.validate_python({**data, "type": event})
        except ValidationError as exc:
            await self.send_error(_invalid(exc), request_id)
            return
        await self.handle(frame, request_id)

    async def handle(self, frame: ChatFrame | CancelFrame | PingFrame, request_id: str) -> None:
        async with self._receive_lock:
            if self._closed:
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
                    if self._identify is not None:
                        self.caller = await self._identify()
                    await self.admission.admit(self.caller)
                    self.slot = await self.admission.limiter.acquire()
                except MeshError as error:
                    await self.send_error(error, request_id, frame.id)
                    return
                self.turn_id = frame.id
                self.turn = asyncio.create_task(self.run_turn(frame, request_id))

    async def close(self) -> None:
        """The client left: stop the turn in progress (and so the model) and wait until it ended.
        A frame still being handled finishes first; none is handled after."""
        async with self._receive_lock:
            self._closed = True
        if self.turn is not None:
            self.turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.turn

    async def run_turn(self, frame: ChatFrame, request_id: str) -> None:
        this = asyncio.current_task()
        try:
            # The turn acts for the key's project (its task may not start in the transport's context).
            with bound_request_id(request_id), bound_project(self.caller.project_id):
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
        """Free the slot and the session for the next turn: before the turn's last frame is sent, so
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

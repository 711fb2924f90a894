"""The realtime chat over Socket.IO (python-socketio's ASGI server, mounted at /socket.io).

The same chat as the WebSocket, for socket.io-client and Flask-SocketIO front ends: the client emits
`chat`, `cancel` and `ping` with the WebSocket frame's fields as payload, and receives `delta`, `done`,
`cancelled`, `error` and `pong` events whose payloads are the WebSocket's frames. Authenticated at the
connection (socket.io-client's `auth: {api_key}`, or the Authorization header); a refused connection
gets Socket.IO's connect_error carrying the WebSocket's `error` frame. Turns are ChatSession's.

Cross-origin: python-socketio's default, same origin only (an Origin header naming another site is
refused), unless GATEWAY_SOCKETIO_CORS_ORIGINS lists the sites allowed. Its `[]` would disable the
origin check altogether, which is not what a gateway without CORS means.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from fastapi import FastAPI

from services.common.errors import MeshError
from services.common.request_id import new_request_id
from services.gateway.auth.admission import Admission, bearer_token
from services.gateway.config import GatewaySettings
from services.gateway.metrics import SOCKETIO_OPEN
from services.gateway.realtime.session import ChatSession, chat_caller, refusal_frame

log = logging.getLogger("llmmesh.gateway.realtime")
# Where socket.io-client looks by default.
SOCKETIO_PATH = "/socket.io"


def mount_socketio(app: FastAPI, settings: GatewaySettings) -> None:
    """Serve the realtime chat over Socket.IO at SOCKETIO_PATH of `app` (whose state holds the
    admission and the orchestrator client once its lifespan began)."""
    server = socketio.AsyncServer(
        async_mode="asgi",
        # None: only the gateway's own origin, python-socketio's default.
        cors_allowed_origins=settings.socketio_cors_origins or None,
        # Keys travel in the auth payload or a header, never in cookies.
        cors_credentials=False,
        # Each client's events are handled one after the other, in order, as the WebSocket's frames.
        async_handlers=False,
        # The heartbeat the WebSocket has from uvicorn, at the same pace.
        ping_interval=settings.ws_ping_s,
        # The largest message (a polling POST or a WebSocket message): the HTTP body limit.
        max_http_buffer_size=settings.max_body_bytes,
        logger=False,
        engineio_logger=False,
    )
    sessions: dict[str, ChatSession] = {}

    @server.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        admission: Admission = app.state.admission
        presented = auth.get("api_key") if isinstance(auth, dict) else None
        token = bearer_token(environ.get("HTTP_AUTHORIZATION")) or (
            presented if isinstance(presented, str) and presented else None
        )
        client = (environ["asgi.scope"].get("client") or ("unknown",))[0]
        request_id = new_request_id()
        try:
            caller = await chat_caller(admission, token, client)
        except MeshError as error:
            raise socketio.exceptions.ConnectionRefusedError(
                error.message, refusal_frame(error, request_id)
            ) from None

        async def send(frame: dict[str, Any]) -> None:
            await server.emit(frame["type"], frame, to=sid)

        sessions[sid] = ChatSession(
            caller,
            admission,
            app.state.settings,
            app.state.orchestrator,
            send,
            identify=lambda: chat_caller(admission, token, client),
        )
        SOCKETIO_OPEN.inc()

    @server.event
    async def disconnect(sid: str, reason: str = "") -> None:
        session = sessions.pop(sid, None)
        if session is not None:
            SOCKETIO_OPEN.dec()
            await session.close()

    @server.on("*")
    async def frame(event: str, sid: str, *args: Any) -> None:
        session = sessions.get(sid)
        if session is None:
            return
        try:
            await session.receive_event(event, args[0] if len(args) == 1 else args or None)
        except Exception:  # the connection went away mid-send, or a bug: never into python-socketio
            log.exception("realtime Socket.IO event failed")

    app.mount(SOCKETIO_PATH, socketio.ASGIApp(server, socketio_path=None))

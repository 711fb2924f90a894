"""The realtime chat WebSocket: one turn at a time, token deltas as they come, cancel mid-turn.

Authenticated at the handshake (Authorization header, or `api_key` query parameter for browsers,
which cannot set headers on a WebSocket); each turn counts against the key's rate limits and takes
one of the gateway's generation slots while it runs (see session.py, which Socket.IO shares). An error
in a turn is an `error` frame; the socket stays open for the next turn. uvicorn sends protocol pings
every GATEWAY_WS_PING_S; a `ping` frame is answered with `pong` for clients that want an
application-level check.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.common.errors import MeshError
from services.common.request_id import new_request_id
from services.gateway.auth.admission import Admission, bearer_token
from services.gateway.metrics import WEBSOCKETS_OPEN
from services.gateway.realtime.session import ChatSession, chat_caller, refusal_frame

router = APIRouter(tags=["realtime"])
# Close code for a refused handshake (RFC 6455: policy violation).
_POLICY_VIOLATION = 1008
# Close code when the mesh cannot check the key now (RFC 6455 registry: try again later).
_TRY_AGAIN_LATER = 1013


def _text(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


@router.websocket("/chat/ws")
async def chat_socket(websocket: WebSocket) -> None:
    """Realtime chat; see the module docstring and README "Realtime chat (WebSocket)"."""
    admission: Admission = websocket.app.state.admission
    token = bearer_token(websocket.headers.get("authorization")) or websocket.query_params.get("api_key")
    await websocket.accept()
    request_id = new_request_id()
    client = websocket.client.host if websocket.client else "unknown"
    try:
        caller = await chat_caller(admission, token, client)
    except MeshError as error:
        await websocket.send_text(json.dumps(refusal_frame(error, request_id)))
        # Only a mesh that cannot check the key now is worth trying again; a refused key is final.
        unavailable = error.status == grpc.StatusCode.UNAVAILABLE
        await websocket.close(code=_TRY_AGAIN_LATER if unavailable else _POLICY_VIOLATION, reason=error.code)
        return

    async def send(frame: dict[str, Any]) -> None:
        await websocket.send_text(_text(frame))

    state = websocket.app.state
    session = ChatSession(
        caller,
        admission,
        state.settings,
        state.orchestrator,
        send,
        identify=lambda: chat_caller(admission, token, client),
    )
    with WEBSOCKETS_OPEN.track_inprogress():
        try:
            while True:
                await session.receive_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            await session.close()

"""Request id and access log for every HTTP request (pure ASGI, so streaming responses pass untouched)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.request_id import HTTP_HEADER, accept_request_id, bound_request_id

log = logging.getLogger("llmmesh.gateway.access")
_HEADER_KEY = HTTP_HEADER.lower().encode()


class RequestIdMiddleware:
    """Takes the caller's X-Request-ID (if well formed) or makes one, binds it, and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = next((v for k, v in scope["headers"] if k == _HEADER_KEY), b"")
        request_id = accept_request_id(supplied.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] != _HEADER_KEY]
                message["headers"] = [*headers, (_HEADER_KEY, request_id.encode())]
            await send(message)

        with bound_request_id(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                log.info(
                    "http request",
                    extra={
                        "method": scope["method"],
                        "route": getattr(route, "path", "unmatched"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
                    },
                )

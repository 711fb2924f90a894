"""Request id, access log and request limits for every HTTP request (pure ASGI, so streaming
responses pass untouched)."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.request_id import HTTP_HEADER, accept_request_id, bound_request_id
from services.gateway.auth.admission import SLOT_STATE
from services.gateway.errors import BodyTimeout, BodyTooLarge, error_payload
from services.gateway.metrics import HTTP_IN_FLIGHT, KNOWN_METHODS, request_children, route_template

log = logging.getLogger("llmmesh.gateway.access")
_HEADER_KEY = HTTP_HEADER.lower().encode()


class RequestIdMiddleware:
    """Takes the caller's X-Request-ID (if well formed) or makes one, binds it, and echoes it back;
    then logs the request and counts it in the HTTP metrics under its route template."""

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

        HTTP_IN_FLIGHT.inc()
        with bound_request_id(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                HTTP_IN_FLIGHT.dec()
                method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
                route = route_template(scope)
                requests, duration = request_children(method, route, status)
                requests.inc()
                duration.observe(seconds)
                if log.isEnabledFor(logging.INFO):  # the line's fields are built only when it is written
                    log.info(
                        "http request",
                        extra={
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(seconds * 1e3, 2),
                        },
                    )


class RequestLimitsMiddleware:
    """Refuses bodies over the size limit with 413 (by Content-Length before reading, or as soon as
    a chunked body passes it) and bodies that stall with 408 (each read must arrive within
    body_timeout_s), and gives back a generation slot once its response has been sent."""

    # Paths whose POST bodies are uploads (multipart): limited by max_upload_bytes, plus room for the
    # form around the file, instead of max_body_bytes.
    UPLOAD_PATHS = frozenset({"/v1/files"})
    FORM_OVERHEAD_BYTES = 64 * 1024

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float = 30.0, max_upload_bytes: int = 0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        if self.max_upload_bytes and scope["method"] == "POST" and scope["path"] in self.UPLOAD_PATHS:
            limit = max(limit, self.max_upload_bytes + self.FORM_OVERHEAD_BYTES)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, BodyTooLarge(limit))
            return
        received = 0
        started = False

        body_done = False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body, receive() waits for the client to leave: no deadline
                return await receive()
            try:
                # a deadline on this await (no task of its own, as wait_for would make per read)
                async with asyncio.timeout(self.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def release_slot() -> None:
            slot = scope.get("state", {}).pop(SLOT_STATE, None)
            if slot is not None:
                await scope["app"].state.admission.limiter.release(slot)

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # The slot is free before the client can see the end of its answer, so the
                # client's next request never finds it still taken (on any replica).
                await release_slot()
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started:
                await self._refuse(scope, send, exc)
        except BodyTimeout as exc:
            if not started:
                await self._refuse(scope, send, exc)
        finally:
            await release_slot()  # an answer that ended without its last body message

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: BodyTooLarge | BodyTimeout) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        body = error_payload(scope["path"], error.status_code, error.code, error.detail, request_id)
        await JSONResponse(body, status_code=error.status_code)(scope, _ignore_receive, send)


async def _ignore_receive() -> Message:
    return {"type": "http.disconnect"}

"""Connections that cannot hold the gateway hostage: request headers have a size limit and a
deadline, request bodies a read timeout.

uvicorn's HTTP protocol (httptools) accepts headers of any size and waits forever for a request that
is sent slowly or never finished; a few such connections (slowloris) tie up a gateway. So:
- a request's headers must arrive within GATEWAY_HEADER_TIMEOUT_S of the request's first byte (or of
  the connection's opening) and fit in GATEWAY_MAX_HEADER_BYTES, else the connection gets 408 or 431
  and is closed;
- once headers are in, each read of the body must arrive within GATEWAY_BODY_TIMEOUT_S
  (RequestLimitsMiddleware answers 408 `request_timeout`).
Idle keep-alive connections are closed by uvicorn after `timeout_keep_alive` as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.request_id import HTTP_HEADER, new_request_id
from services.gateway.config import GatewaySettings
from services.gateway.errors import error_body

log = logging.getLogger("llmmesh.gateway.connections")


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request whose headers are over the limit."""


def _answer(status: int, reason: str, code: str, message: str) -> bytes:
    """The error body every answer has (code, message, a request id of its own, also logged),
    written before any request could reach the app."""
    request_id = new_request_id()
    log.warning("connection refused", extra={"request_id": request_id, "code": code, "status": status})
    body = json.dumps(error_body(code, message, request_id)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{HTTP_HEADER}: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_protocol(settings: GatewaySettings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with this gateway's header limits (see the module docstring)."""
    max_bytes = settings.max_header_bytes
    timeout_s = settings.header_timeout_s

    class GuardedHttpProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _reading_headers = False
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a request is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _refuse(self, answer: bytes) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def _too_slow(self) -> None:
            self._deadline = None
            if self._reading_headers or self.cycle is None:
                self._refuse(
                    _answer(
                        408,
                        "Request Timeout",
                        "request_timeout",
                        f"the request's headers did not arrive within {timeout_s:g} s",
                    )
                )

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request it cannot parse; headers over the limit stopped the
            parser (in on_url / on_header) before the request reached the app, and get 431."""
            if self._header_bytes <= max_bytes:
                super().send_400_response(msg)
                return
            self._refuse(
                _answer(
                    431,
                    "Request Header Fields Too Large",
                    "request_headers_too_large",
                    f"the request's headers are larger than {max_bytes} bytes",
                )
            )

        def _count(self, size: int) -> None:
            self._header_bytes += size
            if self._header_bytes > max_bytes:
                raise _HeadersTooLarge()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_headers = True
            self._header_bytes = 0
            self._arm()

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            self._disarm()
            super().on_headers_complete()

    return GuardedHttpProtocol


def protocol_options(settings: GatewaySettings) -> dict[str, Any]:
    """The uvicorn.Config options that give a gateway these limits."""
    return {"http": guarded_protocol(settings)}

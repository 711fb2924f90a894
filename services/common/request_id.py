"""The request id: one per client request, carried in gRPC metadata across hops and into every log line."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

METADATA_KEY = "x-request-id"
HTTP_HEADER = "X-Request-ID"
# A caller-supplied id is kept only if it is short and plain, so it is safe in logs and headers.
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_current: ContextVar[str] = ContextVar("request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """Return the caller's id when it is well formed, otherwise a fresh one."""
    if candidate and _VALID.match(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str:
    return _current.get()


@contextmanager
def bound_request_id(request_id: str) -> Iterator[str]:
    """Make request_id the current one for the enclosed code (logs, outgoing calls)."""
    token = _current.set(request_id)
    try:
        yield request_id
    finally:
        _current.reset(token)

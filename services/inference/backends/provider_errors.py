"""Provider failures classified once, whatever the SDK: transient ones retried, the rest permanent.

Every backend hands its SDK's exception here (with the HTTP status where there is one) and raises
the MeshError it gets back. The failure is logged with provider, model, error class and the request
id (bound by the log formatter), never with prompt text or credentials.
"""

from __future__ import annotations

import logging
import re

from services.common.errors import MeshError
from services.inference.errors import (
    ContentFiltered,
    PromptTooLong,
    ProviderAuthFailed,
    ProviderRejected,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)

log = logging.getLogger("llmmesh.inference.providers")

_CONTEXT_TOO_LONG = re.compile(
    r"context.?length|context window|too long|too many tokens|maximum context|exceeds the maximum", re.I
)
_CONTENT_FILTER = re.compile(r"content.?(filter|policy|management)|guardrail|safety", re.I)
_THROTTLED_CODES = {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"}


def is_transport_timeout(exc: BaseException) -> bool:
    """A timeout from any HTTP stack (httpx, httpx2, aiohttp, botocore, asyncio)."""
    return any("Timeout" in cls.__name__ for cls in type(exc).__mro__) or isinstance(exc, TimeoutError)


def is_transport_failure(exc: BaseException) -> bool:
    """The connection failed or broke: refused, reset, closed mid-response."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "ConnectError",
            "ConnectionError",
            "EndpointConnectionError",
            "RemoteProtocolError",
            "ReadError",
            "ClientConnectorError",
            "ServerDisconnectedError",
            # aiohttp (google-genai's async stack when installed): a reset socket, a cut-off body.
            "ClientConnectionError",
            "ClientPayloadError",
            "APIConnectionError",
            "ProtocolError",
        }
    ) or isinstance(exc, ConnectionError)


def is_transport_error(exc: BaseException) -> bool:
    return is_transport_timeout(exc) or is_transport_failure(exc)


def classify(
    provider: str,
    model: str,
    exc: BaseException,
    *,
    status: int | None = None,
    message: str = "",
    provider_code: str = "",
) -> MeshError:
    """The MeshError for a failed provider call; `status` is its HTTP status when the provider answered."""
    error: MeshError
    where = f"{provider} (model {model})"
    if status is None and is_transport_timeout(exc):
        error = ProviderTimeout(f"{where} did not answer within its timeout")
    elif status is None and is_transport_failure(exc):
        error = ProviderUnavailable(f"{where} could not be reached")
    elif status == 429 or provider_code in _THROTTLED_CODES:
        error = ProviderThrottled(f"{where} is throttling requests")
    elif status in (401, 403):
        error = ProviderAuthFailed(f"{where} refused the mesh's credentials")
    elif status in (408, 504):
        error = ProviderTimeout(f"{where} timed out (HTTP {status})")
    elif status is not None and 400 <= status < 500:
        if _CONTEXT_TOO_LONG.search(message):
            error = PromptTooLong(f"the prompt is longer than {where} accepts")
        elif _CONTENT_FILTER.search(message):
            error = ContentFiltered(f"{where} refused the content")
        else:
            error = ProviderRejected(f"{where} rejected the request (HTTP {status})")
    elif status is not None:
        error = ProviderUnavailable(f"{where} failed (HTTP {status})")
    else:
        error = ProviderUnavailable(f"{where} failed")
    log.warning(
        "provider call failed: %s",
        error.code,
        extra={
            "provider": provider,
            "model": model,
            "error_class": error.code,
            "retryable": error.status.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"),
            "http_status": status,
            "provider_code": provider_code or type(exc).__name__,
            # The provider's own words, clipped: they explain the failure and carry no prompt.
            "provider_message": message[:200],
        },
    )
    return error

"""Structured logging: one JSON object per line, each carrying the service name and the request id."""

from __future__ import annotations

import logging
import re
import sys

from pythonjsonlogger.json import JsonFormatter

from services.common.request_id import current_request_id
from services.common.tracing import current_trace_ids

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "trace_id",
    "span_id",
}


class _RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id and, while tracing, the trace and span ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or None
        ids = current_trace_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


# A credential in a query string (browsers cannot set headers on a WebSocket, so a key may come as
# ?api_key=): its value, up to the next parameter.
_SECRET_IN_QUERY = re.compile(r"(?i)([?&](?:api_key|access_token|token|key|password)=)[^&\s\"']*")


class RedactSecrets(logging.Filter):
    """Blanks credentials out of the URLs a record carries: uvicorn logs a WebSocket handshake with
    its whole query string, and secrets go nowhere, logs included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _SECRET_IN_QUERY.sub(r"\1[redacted]", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_IN_QUERY.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def redact_secrets(*logger_names: str) -> None:
    """Install RedactSecrets on the named loggers (once each)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


class _TextFormatter(logging.Formatter):
    """For a terminal: the message, then the structured fields as key=value."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} [%(request_id)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", None) or "-"
        line = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_ATTRS)
        return f"{line} {extras}" if extras else line


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route every logger (ours, grpc's, uvicorn's) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(_TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True

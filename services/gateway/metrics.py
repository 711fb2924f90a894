"""The gateway's HTTP metrics, labelled by route template (never the raw path, which holds ids)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "llmmesh_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "llmmesh_http_request_duration_seconds",
    "From a request's arrival to the end of its response (the whole stream for SSE).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("llmmesh_http_requests_in_flight", "HTTP requests being answered now.")
WEBSOCKETS_OPEN = Gauge("llmmesh_websocket_connections", "Realtime chat WebSockets open now.")
SOCKETIO_OPEN = Gauge("llmmesh_socketio_connections", "Realtime chat Socket.IO connections open now.")
LIMITER_ERRORS = Counter(
    "llmmesh_gateway_limiter_errors_total",
    "Limit decisions and counts the shared limiter (Redis) could not make, by operation.",
    ["operation"],
)

# Requests that matched no route are counted under one label value, so probing scanners cannot
# create a time series per path they try.
UNMATCHED = "unmatched"
# Any other method a client invents is counted as "other", for the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Mapping[str, Any]) -> str:
    """The template of the route that answered (`/api/v1/ai/status/{job_id}`), never the raw path.

    FastAPI (from 0.16x) includes routers lazily: a route included under a prefix keeps its own path,
    so the prefix is recovered from the request's path — the part before which the route's pattern
    matches the rest. It is one of the prefixes the app includes routers under, so labels stay bounded.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    pattern = getattr(route, "path_regex", None)
    path = scope.get("path", "")
    if pattern is None or pattern.match(path):
        return template
    for index in range(1, len(path)):
        if path[index] == "/" and pattern.match(path[index:]):
            return path[:index] + template
    return template


@functools.lru_cache(maxsize=2048)
def request_children(method: str, route: str, status: int) -> tuple[Any, Any]:
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_SECONDS.labels(method, route)

"""Prometheus metrics shared by every service: gRPC server and client families, and the /metrics endpoint.

Each service defines its own domain families in its `metrics.py`; all of them live in prometheus-client's
default registry, which each process serves on its own port. Label values are bounded: service and
method names from our protos, status codes, model and route names from the registry — never ids,
prompts or keys. Hot paths look label children up in small dicts instead of calling `.labels()` per
call (which parses and validates the label values every time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common.ports import port_unavailable

log = logging.getLogger("llmmesh.metrics")

# Seconds. From a millisecond store read to a long generation.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class RpcFamilies(NamedTuple):
    started: Counter
    handled: Counter
    seconds: Histogram
    in_flight: Gauge


def _rpc_families(side: str, who: str) -> RpcFamilies:
    """grpc_<side>_{started_total,handled_total,handling_seconds,in_flight}, as go-grpc-prometheus names them."""
    labels = ["grpc_service", "grpc_method"]
    return RpcFamilies(
        Counter(f"grpc_{side}_started_total", f"RPCs started {who}.", labels),
        Counter(
            f"grpc_{side}_handled_total", f"RPCs completed {who}, by status code.", [*labels, "grpc_code"]
        ),
        Histogram(
            f"grpc_{side}_handling_seconds",
            f"Time from an RPC's start to its completion {who} (the whole stream for streaming RPCs).",
            labels,
            buckets=LATENCY_BUCKETS,
        ),
        Gauge(f"grpc_{side}_in_flight", f"RPCs in flight {who}.", labels),
    )


GRPC_SERVER = _rpc_families("server", "on this server")
GRPC_CLIENT = _rpc_families("client", "by this process as a client")


class RpcMetrics:
    """The children of one side's four families for one method, looked up once per method."""

    __slots__ = ("_handled", "_handled_family", "_labels", "in_flight", "seconds", "started")

    def __init__(self, method: str, families: RpcFamilies) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = (service, name)
        self.started = families.started.labels(*self._labels)
        self.seconds = families.seconds.labels(*self._labels)
        self.in_flight = families.in_flight.labels(*self._labels)
        self._handled = {code: families.handled.labels(*self._labels, code) for code in ("OK", "CANCELLED")}
        self._handled_family = families.handled

    def handled(self, code: str) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._handled_family.labels(*self._labels, code)
        return child

    def begin(self) -> None:
        self.started.inc()
        self.in_flight.inc()

    def end(self, code: str, seconds: float) -> None:
        self.in_flight.dec()
        self.seconds.observe(seconds)
        self.handled(code).inc()


def _cached(factory: Callable[[str], RpcMetrics]) -> Callable[[str], RpcMetrics]:
    cache: dict[str, RpcMetrics] = {}

    def lookup(method: str) -> RpcMetrics:
        metrics = cache.get(method)
        if metrics is None:
            metrics = cache[method] = factory(method)
        return metrics

    return lookup


server_rpc = _cached(lambda method: RpcMetrics(method, GRPC_SERVER))
client_rpc = _cached(lambda method: RpcMetrics(method, GRPC_CLIENT))


def serve_metrics(host: str, port: int, setting: str) -> WSGIServer | None:
    """Serve the default registry on http://host:port/metrics in a daemon thread; port 0 turns it off.
    A taken port is a ConfigError naming `setting`, the variable that moves it (e.g. STORE_METRICS_PORT)."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        raise port_unavailable("metrics", host, port, setting, exc.strerror) from exc
    log.info("metrics on http://%s:%d/metrics", host, server.server_port, extra={"port": server.server_port})
    return server

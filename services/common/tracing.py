"""OpenTelemetry tracing: on when an OTLP endpoint is configured, off (and free) when not.

`configure_tracing` installs an SDK tracer provider that batches spans to the OTLP/gRPC endpoint named
by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the exporter
reads the other standard OTEL_* variables itself. Without an endpoint nothing is installed and
`enabled()` stays False, so the interceptors skip span work entirely rather than making no-op spans.
Context crosses hops as W3C `traceparent` in gRPC metadata (the interceptors inject and extract it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from opentelemetry import trace

log = logging.getLogger("llmmesh.tracing")

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_enabled = False
_shutdown: Callable[[], None] | None = None

tracer = trace.get_tracer("llmmesh")


def enabled() -> bool:
    return _enabled


def configure_tracing(service: str) -> bool:
    """Export this process's spans over OTLP when an endpoint is set; returns whether tracing is on."""
    global _enabled, _shutdown
    endpoint = next((os.environ[name] for name in _ENDPOINT_VARIABLES if os.environ.get(name)), None)
    if endpoint is None or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service; otherwise llm-mesh-<service>.
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or f"llm-mesh-{service}"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _enabled = True
    _shutdown = provider.shutdown
    log.info("tracing to %s", endpoint, extra={"endpoint": endpoint})
    return True


def shutdown_tracing() -> None:
    """Flush the spans still batched (a stopping process would otherwise drop its last ones)."""
    global _enabled, _shutdown
    if _shutdown is not None:
        _shutdown()
    _enabled, _shutdown = False, None


def current_trace_ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex, for log lines; None outside a recorded span."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")

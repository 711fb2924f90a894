"""The shared interceptors: what every RPC between mesh services goes through, on both ends.

Server side, one interceptor binds the request id, continues the caller's trace, logs each RPC,
counts it in the gRPC metrics and maps exceptions to gRPC statuses (modelled on KServe's
ExceptionToStatusInterceptor: a `MeshError` becomes its own status with its stable code in trailing
metadata; anything else becomes INTERNAL with a generic message while the traceback goes to the log).
Client side, `ClientCall` (used by every typed client for each call) sends the request id and trace
context along and counts the call in the client metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.common import tracing
from services.common.errors import ERROR_CODE_KEY, InvalidServiceToken, MeshError
from services.common.metrics import client_rpc, server_rpc
from services.common.request_id import METADATA_KEY, accept_request_id, bound_request_id, current_request_id
from services.common.tenancy import METADATA_KEY as PROJECT_KEY
from services.common.tenancy import accept_project, bound_project, current_project

log = logging.getLogger("llmmesh.rpc")

# Where one mesh service presents the service token to another.
SERVICE_TOKEN_KEY = "x-mesh-service-token"
# Probes and tooling: no request id, no access log, and they must never be slowed by ours.
_PASS_THROUGH_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _caller_of(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """The caller's request id (else a fresh one) and the project it acts for (none named: the
    default project; a malformed one: InvalidProject), from metadata (the only place they travel),
    read in one pass."""
    request_id: str | None = None
    project: str | None = None
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY and request_id is None:
            request_id = value if isinstance(value, str) else value.decode()
        elif key == PROJECT_KEY and project is None:
            project = value if isinstance(value, str) else value.decode()
    return accept_request_id(request_id), accept_project(project)


def _status_of(exc: BaseException) -> grpc.StatusCode:
    return exc.status if isinstance(exc, MeshError) else grpc.StatusCode.INTERNAL


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    """Answer with the error's status (a MeshError's own; INTERNAL for anything else, whose traceback is
    logged here). The RPC's one "rpc done" line has already recorded its code."""
    if isinstance(exc, MeshError):
        await context.abort(exc.status, exc.message, trailing_metadata=((ERROR_CODE_KEY, exc.code),))
    log.exception("unhandled error in rpc", extra={"method": method})
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal error", trailing_metadata=((ERROR_CODE_KEY, "internal"),)
    )


# Calls job workers make on a timer whether or not there is work: logged at DEBUG, or an idle mesh
# would write a line a second per replica.
_HOUSEKEEPING = frozenset(
    f"/llmmesh.store.v1.StoreService/{name}" for name in ("ClaimJobs", "RenewLeases", "WatchJobs")
)


class _ServerCall:
    """One RPC's bookkeeping on the server: metrics, its span when tracing is on, the access log."""

    __slots__ = ("_metrics", "_span", "_span_scope", "method", "started")

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self._metrics = server_rpc(method)
        self._metrics.begin()
        self._span: trace.Span | None = None
        if tracing.enabled():
            parent = propagate.extract(dict(context.invocation_metadata() or ()))
            self._span = tracing.tracer.start_span(method.lstrip("/"), context=parent, kind=SpanKind.SERVER)
            self._span_scope = trace.use_span(self._span, end_on_exit=False)
            self._span_scope.__enter__()
        self.started = time.perf_counter()

    def done(self, code: grpc.StatusCode, error: BaseException | None = None) -> None:
        seconds = time.perf_counter() - self.started
        self._metrics.end(code.name, seconds)
        outcome = {grpc.StatusCode.OK: "ok", grpc.StatusCode.CANCELLED: "cancelled"}.get(code, "error")
        level = logging.DEBUG if self.method in _HOUSEKEEPING and outcome == "ok" else logging.INFO
        if log.isEnabledFor(level):  # the line's fields are built only when it is written
            extra: dict[str, Any] = {
                "method": self.method,
                "outcome": outcome,
                "duration_ms": round(seconds * 1e3, 2),
            }
            if outcome == "error":
                extra.update(
                    status=code.name, code=error.code if isinstance(error, MeshError) else "internal"
                )
            log.log(level, "rpc done", extra=extra)
        if self._span is not None:  # ended after the log line, which carries its trace id
            self._span.set_attribute("rpc.grpc.status_code", code.value[0])
            if error is not None and code is not grpc.StatusCode.CANCELLED:
                self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self._span_scope.__exit__(None, None, None)
            self._span.end()


def _refused(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind that answers UNAUTHENTICATED: a caller without the service token."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        error = InvalidServiceToken("this service answers only the mesh's own services (MESH_SERVICE_TOKEN)")
        await _abort_for(error, context, "")

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await deny(request, context)
        yield  # pragma: no cover - abort raised

    if handler.unary_stream is not None:
        return handler._replace(unary_stream=deny_stream)
    return handler._replace(unary_unary=deny)


class MeshServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary and server-streaming handler of our services; with a service token, refuses
    callers that do not present it (health and reflection stay open, for probes and tooling)."""

    def __init__(self, service_token: str | None = None) -> None:
        self._token = service_token.encode() if service_token else None

    def _presented(self, details: grpc.HandlerCallDetails) -> bool:
        assert self._token is not None
        for key, value in details.invocation_metadata or ():
            if key == SERVICE_TOKEN_KEY:
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._token)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_PASS_THROUGH_PREFIXES):
            return handler
        if self._token is not None and not self._presented(handler_call_details):
            log.warning("call without the service token refused", extra={"method": method})
            return _refused(handler)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary(handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap_stream(handler.unary_stream, method))
        return handler  # client-streaming RPCs: none in our protos yet

    @staticmethod
    def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                request_id, project = _caller_of(context)
            except MeshError as exc:
                await _abort_for(exc, context, method)
            with bound_request_id(request_id), bound_project(project):
                call = _ServerCall(method, context)
                try:
                    response = await behavior(request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError) as exc:
                    call.done(grpc.StatusCode.CANCELLED, exc)
                    raise
                except Exception as exc:
                    call.done(_status_of(exc), exc)
                    await _abort_for(exc, context, method)
                call.done(grpc.StatusCode.OK)
                return response

        return wrapper

    @staticmethod
    def _wrap_stream(
        behavior: Callable[..., AsyncGenerator[Any, None]], method: str
    ) -> Callable[..., Awaitable[None]]:
        """A coroutine that writes the servicer's responses itself, not an async generator for grpc
        to drive: grpc iterates a generator handler with `async for` and, when the call is cancelled
        while it writes a response (the caller left and stopped reading), never closes it; the garbage
        collector then closes it in another task, where resetting the request id or the project (or
        detaching the span's context) fails with "Token was created in a different Context", logged
        as an ERROR. Here the cancellation arrives in this coroutine, the servicer's generator is
        closed at once (which stops the work under it), and the request id, project and span are
        unbound in the task that bound them."""

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> None:
            try:
                request_id, project = _caller_of(context)
            except MeshError as exc:
                await _abort_for(exc, context, method)
            with bound_request_id(request_id), bound_project(project):
                call = _ServerCall(method, context)
                try:
                    async with contextlib.aclosing(behavior(request, context)) as responses:
                        async for response in responses:
                            await context.write(response)
                except (asyncio.CancelledError, grpc.aio.AbortError) as exc:
                    call.done(grpc.StatusCode.CANCELLED, exc)
                    raise
                except Exception as exc:
                    call.done(_status_of(exc), exc)
                    await _abort_for(exc, context, method)
                call.done(grpc.StatusCode.OK)

        return wrapper


def outgoing_metadata(span: trace.Span | None, service_token: str | None) -> tuple[tuple[str, str], ...]:
    """What every call to another mesh service carries: the request id, the project, the service
    token when one is set and, when tracing, the trace context."""
    extra: dict[str, str] = {}
    if service_token:
        extra[SERVICE_TOKEN_KEY] = service_token
    request_id = current_request_id()
    if request_id:
        extra[METADATA_KEY] = request_id
    extra[PROJECT_KEY] = current_project()
    if span is not None:
        propagate.inject(extra, context=trace.set_span_in_context(span))
    return tuple(extra.items())


class ClientCall:
    """One outgoing RPC's bookkeeping: its metadata, metrics and client span, closed when the call is
    done. The typed clients (services/common/client.py) make one per call: done in the call itself, it
    costs a fraction of a channel interceptor, which grpc.aio runs as a task of its own wrapping the
    call (measured: about 50 µs of CPU a unary call, on every hop of every request)."""

    __slots__ = ("_metrics", "_span", "_token", "started")

    def __init__(self, method: str | bytes, service_token: str | None) -> None:
        self._token = service_token
        if isinstance(method, bytes):  # how grpc.aio's callables hold it
            method = method.decode()
        self._metrics = client_rpc(method)
        self._metrics.begin()
        self._span = (
            tracing.tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT) if tracing.enabled() else None
        )
        self.started = time.perf_counter()

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return outgoing_metadata(self._span, self._token)

    def watch(self, call: grpc.aio.Call) -> None:
        """Record the stream's end when it comes (its status is only readable by awaiting code())."""
        call.add_done_callback(self._on_done)

    def _on_done(self, call: grpc.aio.Call) -> None:
        # An aio call's code() is a coroutine; the call is over, so it completes in the task at once.
        asyncio.get_running_loop().create_task(self._recorded(call))

    async def _recorded(self, call: grpc.aio.Call) -> None:
        self.record(grpc.StatusCode.CANCELLED if call.cancelled() else await call.code())

    def record(self, code: grpc.StatusCode) -> None:
        self._metrics.end(code.name, time.perf_counter() - self.started)
        if self._span is not None:
            self._span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
                self._span.set_status(Status(StatusCode.ERROR, code.name))
            self._span.end()

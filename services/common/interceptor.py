"""The one server interceptor: binds the request id, logs each RPC, maps exceptions to gRPC statuses.

Modelled on KServe's ExceptionToStatusInterceptor: a `MeshError` becomes its own status with its
stable code in trailing metadata; anything else becomes INTERNAL with a generic message while the
traceback goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.common.errors import ERROR_CODE_KEY, MeshError
from services.common.request_id import METADATA_KEY, accept_request_id, bound_request_id

log = logging.getLogger("llmmesh.rpc")

# Probes and tooling: no request id, no access log, and they must never be slowed by ours.
_PASS_THROUGH_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _request_id_of(context: grpc.aio.ServicerContext, request: Any) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == METADATA_KEY:
            return accept_request_id(value if isinstance(value, str) else value.decode())
    return accept_request_id(getattr(request, "request_id", None))


async def _abort_for(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, MeshError):
        log.info("rpc failed", extra={"method": method, "code": exc.code, "status": exc.status.name})
        await context.abort(exc.status, exc.message, trailing_metadata=((ERROR_CODE_KEY, exc.code),))
    log.exception("unhandled error in rpc", extra={"method": method})
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal error", trailing_metadata=((ERROR_CODE_KEY, "internal"),)
    )


# Calls job workers make on a timer whether or not there is work: logged at DEBUG, or an idle mesh
# would write a line a second per replica.
_HOUSEKEEPING = frozenset(
    f"/llmmesh.v1.StoreService/{name}" for name in ("ClaimJobs", "RenewLeases", "WatchJobs")
)


def _log_done(method: str, started: float, outcome: str) -> None:
    log.log(
        logging.DEBUG if method in _HOUSEKEEPING and outcome == "ok" else logging.INFO,
        "rpc done",
        extra={
            "method": method,
            "outcome": outcome,
            "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
        },
    )


class MeshServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary and server-streaming handler of our services."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_PASS_THROUGH_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary(handler.unary_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap_stream(handler.unary_stream, method))
        return handler  # client-streaming RPCs: none in our protos yet

    @staticmethod
    def _wrap_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with bound_request_id(_request_id_of(context, request)):
                started = time.perf_counter()
                try:
                    response = await behavior(request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    _log_done(method, started, "cancelled")
                    raise
                except Exception as exc:
                    await _abort_for(exc, context, method)
                _log_done(method, started, "ok")
                return response

        return wrapper

    @staticmethod
    def _wrap_stream(
        behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with bound_request_id(_request_id_of(context, request)):
                started = time.perf_counter()
                try:
                    async for response in behavior(request, context):
                        yield response
                except (asyncio.CancelledError, grpc.aio.AbortError, GeneratorExit):
                    _log_done(method, started, "cancelled")
                    raise
                except Exception as exc:
                    await _abort_for(exc, context, method)
                _log_done(method, started, "ok")

        return wrapper

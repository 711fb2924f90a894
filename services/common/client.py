"""What every typed service client shares: its channel, its deadline, and failed calls turned back
into the mesh's errors in one place.

Each service's `client.py` subclasses `ServiceClient` with one async method per RPC. The request id,
the project, the trace context and the service token travel in metadata, added to each call here
(services/common/interceptor.ClientCall), which also counts it in the client metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, ClassVar, Self, TypeVar

import grpc
from pydantic import SecretStr

from services.common.errors import ERROR_CODE_KEY, InvalidServiceToken, RemoteError, from_rpc_error
from services.common.grpc_options import create_channel
from services.common.interceptor import ClientCall

log = logging.getLogger("llmmesh.client")

Response = TypeVar("Response")


def error_of(exc: grpc.aio.AioRpcError) -> RemoteError:
    """The domain error behind a failed call. A failure the peer did not explain (no error code: the
    connection, the deadline, a crash) is logged with its transport details, which never reach a
    client. A peer that refused this service's token is the mesh misconfigured, not the client's
    fault: it is logged as such and reported as unavailable."""
    if not any(key == ERROR_CODE_KEY for key, _ in exc.trailing_metadata() or ()):
        log.warning("call failed", extra={"status": exc.code().name, "details": exc.details()})
    error = from_rpc_error(exc)
    if error.code == InvalidServiceToken.code:
        log.error("a mesh service refused this one's service token: set the same MESH_SERVICE_TOKEN on all")
        return RemoteError(grpc.StatusCode.UNAVAILABLE, "unavailable", "a downstream service is unavailable")
    return error


def _method_of(rpc: Any) -> bytes:
    """The method path of a stub's callable (grpc.aio's multi-callables keep it as `_method`, and hand
    the same to interceptors)."""
    method: bytes = rpc._method
    return method


class ServiceClient:
    """A channel to one service and the deadline its unary calls get unless a call says otherwise."""

    # A subclass's service stub, and its default deadline for unary calls (None: no deadline).
    stub_class: ClassVar[type[Any]]
    default_timeout_s: ClassVar[float | None] = None

    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout_s: float | None = None,
        service_token: SecretStr | None = None,
    ) -> None:
        self.channel = channel
        self.timeout_s = timeout_s if timeout_s is not None else self.default_timeout_s
        self._stub = self.stub_class(channel)
        self._token = service_token.get_secret_value() if service_token else None

    @classmethod
    def connect(
        cls, address: str, timeout_s: float | None = None, service_token: SecretStr | None = None
    ) -> Self:
        """A client over a new channel to `address` (closed by `close`), presenting the mesh's service
        token when one is set."""
        return cls(create_channel(address), timeout_s, service_token)

    async def close(self) -> None:
        await self.channel.close()

    async def _unary(
        self, rpc: Callable[..., Awaitable[Response]], request: Any, timeout_s: float | None = None
    ) -> Response:
        call = ClientCall(_method_of(rpc), self._token)
        try:
            response = await rpc(
                request,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
                metadata=call.metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            call.record(exc.code())
            raise error_of(exc) from exc
        except asyncio.CancelledError:
            call.record(grpc.StatusCode.CANCELLED)
            raise
        call.record(grpc.StatusCode.OK)
        return response

    async def _stream(
        self, rpc: Callable[..., Any], request: Any, timeout_s: float | None
    ) -> AsyncGenerator[Any, None]:
        """The responses of a server stream (whose deadline the caller sets: None is none); closing
        the iterator early cancels the call."""
        bookkeeping = ClientCall(_method_of(rpc), self._token)
        call = rpc(request, timeout=timeout_s, metadata=bookkeeping.metadata())
        bookkeeping.watch(call)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise error_of(exc) from exc
        finally:
            call.cancel()

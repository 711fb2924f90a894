"""The error contract: domain exceptions with a stable machine code and the gRPC status they map to.

Each service's `errors.py` subclasses these. The server interceptor turns any of them into a gRPC
status whose trailing metadata carries the code, so the next hop (and finally the gateway) can
rebuild the same error with `from_rpc_error` without parsing messages.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

ERROR_CODE_KEY = "x-error-code"
# Codes of errors the model provider caused (gateway: HTTP 502) start with this.
UPSTREAM_CODE_PREFIX = "upstream_"


def shown(value: str, limit: int = 80) -> str:
    """A caller's value quoted in an error message, cut to `limit` characters: a message names what
    was asked for, it does not echo a 5,000-character id back."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + f"… ({len(value)} characters)"


class MeshError(Exception):
    """An error a client may see: `message` is human and safe to show; `code` is stable."""

    code: ClassVar[str] = "internal"
    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MeshError):
    code = "invalid_argument"
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MeshError):
    code = "not_found"
    status = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(MeshError):
    code = "failed_precondition"
    status = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MeshError):
    code = "resource_exhausted"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(MeshError):
    code = "unavailable"
    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(MeshError):
    code = "deadline_exceeded"
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class UpstreamError(MeshError):
    """The model provider failed; every code of this family starts with UPSTREAM_CODE_PREFIX."""

    code = "upstream_error"
    status = grpc.StatusCode.INTERNAL


class IncompleteGeneration(Unavailable):
    """A model stream that ended without its final result (the backend died midway)."""

    code = "incomplete_generation"


# Errors more than one service raises: each code is defined once in the mesh, here.


class ModelNotFound(NotFound):
    """No model (or route) of that name, in the registry or in the pool asked."""

    code = "model_not_found"


class InvalidGenerationRequest(InvalidArgument):
    """A generation request that cannot be run as given (no prompt, a malformed conversation, ...)."""

    code = "invalid_generation_request"


class ToolsNotSupported(InvalidArgument):
    """Tools (or tool turns) sent to a model that cannot call them; a route passes such tiers over."""

    code = "tools_not_supported"


class UnsupportedTask(InvalidArgument):
    """A generation asked of an embedding model, or embeddings of a model that cannot make them."""

    code = "unsupported_task"


class FileTooLarge(InvalidArgument):
    """Over a size limit the message names (a file, a document's text or chunks): HTTP 413."""

    code = "file_too_large"


class UnsupportedFileType(InvalidArgument):
    """A file whose text the mesh cannot read: HTTP 415."""

    code = "unsupported_file_type"


class ProjectNotFound(NotFound):
    """No project of that id, or one the caller may not see (a project admin sees only its own)."""

    code = "project_not_found"


class InvalidApiKey(MeshError):
    """An API key that is unknown, malformed or revoked."""

    code = "invalid_api_key"
    status = grpc.StatusCode.UNAUTHENTICATED


class InvalidProject(InvalidArgument):
    """A call between mesh services naming a project that is not a project id (x-mesh-project)."""

    code = "invalid_project"


class InvalidServiceToken(MeshError):
    """A call between mesh services without the mesh's service token (MESH_SERVICE_TOKEN)."""

    code = "invalid_service_token"
    status = grpc.StatusCode.UNAUTHENTICATED


class RemoteError(MeshError):
    """An error received from another service, keeping its status and code as they were."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


# What a peer that sent no code (a proxy, a crashed process, grpc itself) meant by each status.
_DEFAULT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument.code,
    grpc.StatusCode.NOT_FOUND: NotFound.code,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition.code,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted.code,
    grpc.StatusCode.UNAVAILABLE: Unavailable.code,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded.code,
    grpc.StatusCode.CANCELLED: "cancelled",
}
_GENERIC_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "a downstream service is unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the request took longer than its deadline",
    grpc.StatusCode.INTERNAL: "internal error",
    grpc.StatusCode.UNKNOWN: "internal error",
}


def from_rpc_error(exc: grpc.aio.AioRpcError) -> RemoteError:
    """Rebuild the domain error a downstream service raised.

    Errors our services raised carry their code in trailing metadata and a client-safe message.
    Errors raised by the gRPC runtime itself (connection refused, deadline) carry transport details
    in their message, so those get a generic message instead.
    """
    status = exc.code()
    code = ""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_CODE_KEY:
            code = value if isinstance(value, str) else value.decode()
    if code:
        return RemoteError(status, code, exc.details() or _GENERIC_MESSAGES.get(status, "error"))
    return RemoteError(
        status,
        _DEFAULT_CODES.get(status, "internal"),
        _GENERIC_MESSAGES.get(status, exc.details() or "error"),
    )

"""The HTTP error contract: every error is JSON with a stable code, a message and the request id.

The errors the gateway raises itself are defined here, and the statuses of the mesh's errors map to
HTTP statuses here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common import errors as common_errors
from services.common.errors import (
    UPSTREAM_CODE_PREFIX,
    FailedPrecondition,
    InvalidArgument,
    MeshError,
    ResourceExhausted,
    Unavailable,
)
from services.common.request_id import HTTP_HEADER

log = logging.getLogger("llmmesh.gateway")

HTTP_STATUS_BY_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


# OpenAI's error `type` for each HTTP status, for the OpenAI-compatible routes under /v1.
OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
OPENAI_PREFIX = "/v1/"
# How much of a caller's path an error message quotes.
QUOTED_PATH_CHARS = 80
# Anthropic's error `type` for each HTTP status (its API reference's list), for /v1/messages.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
ANTHROPIC_PREFIX = "/v1/messages"
# Ollama's API lives under /api/, beside our own /api/v1/.
OLLAMA_PREFIX = "/api/"
OWN_API_PREFIX = "/api/v1/"
# The request field an OpenAI error names (`param`) for the mesh's errors that are about one field.
OPENAI_PARAMS = {
    "previous_response_not_found": "previous_response_id",
    "input_item_not_found": "after",
    "tools_not_supported": "tools",
}
INVALID_JSON = "the request body is not valid JSON (UTF-8 text, not compressed)"


class GatewayError(MeshError):
    """An error the gateway itself raises (auth, limits), with the HTTP headers that go with it."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class Unauthenticated(GatewayError):
    code = "missing_api_key"
    status = grpc.StatusCode.UNAUTHENTICATED


class InvalidApiKey(Unauthenticated, common_errors.InvalidApiKey):
    """The mesh's invalid_api_key, raised by the gateway itself (with WWW-Authenticate)."""

    code = common_errors.InvalidApiKey.code


class AdminDisabled(GatewayError):
    code = "admin_disabled"
    status = grpc.StatusCode.PERMISSION_DENIED


class InvalidAdminToken(Unauthenticated):
    code = "invalid_admin_token"


class OperatorOnly(GatewayError):
    """An admin call only the operator's admin token may make."""

    code = "operator_only"
    status = grpc.StatusCode.PERMISSION_DENIED


class MissingScope(GatewayError):
    """A valid key asked for something its scopes do not allow."""

    code = "insufficient_scope"
    status = grpc.StatusCode.PERMISSION_DENIED


class RateLimited(GatewayError, ResourceExhausted):
    code = "rate_limited"


class Overloaded(GatewayError, Unavailable):
    code = "overloaded"


class LimiterUnavailable(GatewayError, Unavailable):
    """The shared limiter (Redis) did not answer and GATEWAY_REDIS_FAILURE is "closed"."""

    code = "limiter_unavailable"


class InvalidBatchFile(InvalidArgument):
    code = "invalid_batch_file"


class InvalidIdempotencyKey(InvalidArgument):
    code = "invalid_idempotency_key"


class InvalidConversationId(InvalidArgument):
    code = "invalid_conversation_id"


class InvalidFrame(InvalidArgument):
    """A realtime WebSocket frame that is not valid JSON or not one of the frames it accepts."""

    code = "invalid_frame"


class TurnInProgress(FailedPrecondition):
    code = "turn_in_progress"


class NoTurn(FailedPrecondition):
    code = "no_turn_in_progress"


class ClientClosedRequest(MeshError):
    """The client left before its answer (logged as 499; nobody receives the body)."""

    code = "client_closed_request"
    status = grpc.StatusCode.CANCELLED


class BodyTooLarge(StarletteHTTPException):
    """Raised from receive() when a body passes the size limit; an HTTPException so FastAPI's body
    parsing passes it on unchanged."""

    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyTimeout(StarletteHTTPException):
    """Raised from receive() when a body stops arriving; answered 408 by RequestLimitsMiddleware."""

    code = "request_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"the request body did not arrive within {timeout_s:g} s")


class ErrorDetail(BaseModel):
    field: str
    message: str


class Error(BaseModel):
    code: str
    message: str
    request_id: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """The body of every non-2xx response."""

    error: Error


def error_responses(
    *statuses: int, descriptions: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for an operation's error statuses (422 and 503 can happen anywhere)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *(descriptions or {}), 422, 503}):
        responses[status] = {"model": ErrorBody}
        if descriptions and status in descriptions:
            responses[status]["description"] = descriptions[status]
    return responses


def document_body_errors(app: FastAPI) -> None:
    """Every operation that reads a body can answer 400 `invalid_json` and 413 `request_too_large`
    (the body is read before any route runs): say so in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" not in operation:
                    continue
                for status, what in (("400", "The body is not valid JSON"), ("413", "The body is too large")):
                    operation["responses"].setdefault(
                        status,
                        {
                            "description": what,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                            },
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_body(
    code: str, message: str, request_id: str, details: list[ErrorDetail] | None = None
) -> dict[str, Any]:
    return ErrorBody(
        error=Error(code=code, message=message, request_id=request_id, details=details)
    ).model_dump(exclude_none=True)


def openai_error_body(
    status: int, code: str, message: str, request_id: str, param: str | None = None
) -> dict[str, Any]:
    """The error body OpenAI's API sends (and its SDKs parse), with our request id beside it; `param`
    names the request field at fault, when one is."""
    kind = OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "error": {"message": message, "type": kind, "param": param, "code": code, "request_id": request_id}
    }


def anthropic_error_body(status: int, code: str, message: str, request_id: str) -> dict[str, Any]:
    """The error body Anthropic's API sends (and its SDKs parse), with our stable code beside its type."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message, "code": code},
        "request_id": request_id,
    }


def ollama_error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """Ollama's error body, `{"error": message}` (what its clients read), with our code and request id beside it."""
    return {"error": message, "code": code, "request_id": request_id}


def is_ollama_path(path: str) -> bool:
    return path.startswith(OLLAMA_PREFIX) and not path.startswith(OWN_API_PREFIX)


def _foreign_api(path: str) -> bool:
    """Whether the path is another API's (OpenAI, Anthropic, Ollama): those answer a malformed request with 400."""
    return path.startswith(OPENAI_PREFIX) or is_ollama_path(path)


def error_payload(
    path: str,
    status: int,
    code: str,
    message: str,
    request_id: str,
    details: list[ErrorDetail] | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The body of an error in the shape of the API the path belongs to: Anthropic's on /v1/messages,
    OpenAI's on the rest of /v1, Ollama's on /api/ (but /api/v1), ours everywhere else."""
    if path.startswith(ANTHROPIC_PREFIX):
        return anthropic_error_body(status, code, message, request_id)
    if path.startswith(OPENAI_PREFIX):
        return openai_error_body(status, code, message, request_id, param)
    if is_ollama_path(path):
        return ollama_error_body(code, message, request_id)
    return error_body(code, message, request_id, details)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    request_id = request_id_of(request)
    return JSONResponse(
        error_payload(request.url.path, status, code, message, request_id, details, param),
        status_code=status,
        headers={**(headers or {}), HTTP_HEADER: request_id},
    )


# Bad requests with a status of their own: too large (413, the message names the limit), and files of
# a type whose text the mesh cannot read (415).
HTTP_STATUS_BY_CODE = {"file_too_large": 413, "unsupported_file_type": 415}


def http_status_of(error: MeshError) -> int:
    return http_status(error.code, error.status)


def http_status(code: str, status: grpc.StatusCode) -> int:
    """The HTTP status of an error with this stable code and gRPC status."""
    if code.startswith(UPSTREAM_CODE_PREFIX):  # the model provider failed, not the mesh
        return 504 if status == grpc.StatusCode.DEADLINE_EXCEEDED else 502
    return HTTP_STATUS_BY_CODE.get(code) or HTTP_STATUS_BY_GRPC.get(status, 500)


# Pydantic's messages that name its own types; a caller knows JSON's.
_PLAIN_MESSAGES = {
    "model_type": "Input should be an object",
    "model_attributes_type": "Input should be an object",
    "dict_type": "Input should be an object",
    "is_instance_of": "Input should be an object",
    "dataclass_type": "Input should be an object",
}


def field_error(field: str, message: str, kind: str = "unsupported") -> PydanticCustomError:
    """For a validator of a whole request body: a 400 that names the request field at fault (the OpenAI
    error's `param`), not the body. `message` may say `{field}`."""
    return PydanticCustomError(kind, message, {"field": field})


def _field(loc: tuple[Any, ...]) -> str:
    """A field's path as the caller wrote it: `messages.0.content`, without `body` and without the names
    pydantic gives the members of a union (`str`, `list[TextPart]`, `function-after[...]`)."""
    names = [str(part) for part in loc if part != "body" and not _union_member(part)]
    return ".".join(names) or "body"


def _union_member(part: object) -> bool:
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "list", "dict", "none"}
        or "[" in part
        or part.endswith("-str")
    )


def _message(error: Any) -> str:
    kind = str(error.get("type", ""))
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    message = str(error.get("msg", ""))
    # A validator's own ValueError reads "Value error, <what it said>"; the caller needs only what it said.
    return message.removeprefix("Value error, ")


def field_errors(errors: Sequence[Any]) -> list[ErrorDetail]:
    """One detail per field at fault, in the caller's words: a value that fits no member of a union
    (a prompt that is neither a string nor a list of strings) gets one detail listing what it may be."""
    merged: dict[str, list[str]] = {}
    for error in errors:
        # A validator of an object that rejects one field of it names the field (field_error's ctx).
        field = _field(tuple(error.get("loc", ())))
        named = (error.get("ctx") or {}).get("field")
        if named:
            field = str(named) if field == "body" else f"{field}.{named}"
        messages = merged.setdefault(str(field), [])
        message = _message(error)
        if message not in messages:
            messages.append(message)
    # A union member that got further into the value says more than one that refused its type: a list
    # of parts missing a `text` is reported there, not as "should be a string" one level up.
    deeper = {field for field in merged if any(other.startswith(f"{field}.") for other in merged)}
    return [
        ErrorDetail(field=field, message=_either(messages))
        for field, messages in merged.items()
        if field not in deeper
    ]


def _either(messages: list[str]) -> str:
    """`Input should be a valid string or a valid list` for a union's members' `Input should be ...`s."""
    lead = "Input should be "
    if len(messages) > 1 and all(m.startswith(lead) for m in messages):
        return lead + " or ".join(m.removeprefix(lead) for m in messages)
    return " or ".join(messages)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(request, 400, "invalid_json", INVALID_JSON)
    # OpenAI's, Anthropic's and Ollama's APIs answer a malformed request with 400, and their SDKs expect that.
    status = 400 if _foreign_api(request.url.path) else 422
    message, details, param = invalid_request(errors)
    return error_response(request, status, "invalid_request", message, details, param=param)


def invalid_request(errors: Sequence[Any]) -> tuple[str, list[ErrorDetail], str | None]:
    """The message, details and OpenAI `param` of a request body that failed validation. Pydantic's
    messages only: the offending input is not echoed back (it may be a huge prompt)."""
    details = field_errors(errors)
    summary = "; ".join(f"{d.field}: {d.message}" for d in details[:3])
    param = details[0].field if details and details[0].field != "body" else None
    return f"invalid request: {summary}", details, param


async def _mesh_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MeshError)
    headers = exc.headers if isinstance(exc, GatewayError) else None
    return error_response(
        request,
        http_status_of(exc),
        exc.code,
        exc.message,
        headers=headers,
        param=OPENAI_PARAMS.get(exc.code),
    )


def _unsupported_endpoint(request: Request) -> JSONResponse:
    """A path under /v1 that no route serves: OpenAI's answer to an invalid URL (404,
    invalid_request_error), naming it, so an OpenAI client calling an API this server lacks says which."""
    path = request.url.path
    shown = path if len(path) <= QUOTED_PATH_CHARS else f"{path[:QUOTED_PATH_CHARS]}…"
    message = f"{request.method} {shown} is not supported by this server"
    request_id = request_id_of(request)
    body = openai_error_body(404, "unsupported_endpoint", message, request_id)
    body["error"]["type"] = "invalid_request_error"
    return JSONResponse(body, status_code=404, headers={HTTP_HEADER: request_id})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # No route matched (a matched route's scope names its endpoint): whatever routes are added later,
    # this is only ever the answer for a path none of them serves.
    if (
        exc.status_code == 404
        and request.url.path.startswith(OPENAI_PREFIX)
        and "endpoint" not in request.scope
    ):
        return _unsupported_endpoint(request)
    if exc.status_code == 400:  # FastAPI could not read the body: not UTF-8, nested too deep, compressed
        return error_response(request, 400, "invalid_json", INVALID_JSON)
    codes = {404: "route_not_found", 405: "method_not_allowed", 408: BodyTimeout.code, 413: BodyTooLarge.code}
    # A body that stalled is left half-read: the connection cannot serve another request.
    close = {"Connection": "close"} if exc.status_code == 408 else None
    code = codes.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail), headers=close)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(request, 500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MeshError, _mesh_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)

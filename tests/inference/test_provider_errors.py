"""Provider failures classified once: each SDK's exception or HTTP status to the mesh error it means."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import botocore.exceptions
import grpc
import httpx
import httpx2
import openai
import pytest

from services.common.errors import MeshError
from services.inference.backends.provider_errors import (
    classify,
    is_transport_error,
    is_transport_failure,
    is_transport_timeout,
)
from services.inference.errors import (
    ContentFiltered,
    PromptTooLong,
    ProviderAuthFailed,
    ProviderRejected,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)

# The OpenAI SDK runs on httpx2, a fork of httpx with its own classes.
REQUEST = httpx2.Request("POST", "https://provider.example.test/v1/chat")

TIMEOUTS = [
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectTimeout("connect timed out"),
    httpx2.ReadTimeout("read timed out"),
    openai.APITimeoutError(request=REQUEST),
    botocore.exceptions.ReadTimeoutError(endpoint_url="https://bedrock.example.test"),
    aiohttp.ServerTimeoutError("timeout"),
    TimeoutError(),
]
FAILURES = [
    httpx.ConnectError("connection refused"),
    httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    httpx.ReadError("connection reset"),
    httpx2.RemoteProtocolError("incomplete chunked read"),
    openai.APIConnectionError(request=REQUEST),
    botocore.exceptions.EndpointConnectionError(endpoint_url="https://bedrock.example.test"),
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientOSError(104, "Connection reset by peer"),
    aiohttp.ClientPayloadError("Response payload is not completed"),
    ConnectionRefusedError(),
    ConnectionResetError(),
]
NOT_TRANSPORT = [ValueError("bad json"), KeyError("choices"), OSError("disk full"), RuntimeError()]


def ids(excs: Sequence[BaseException]) -> list[str]:
    return [type(e).__module__.split(".")[0] + "." + type(e).__name__ for e in excs]


@pytest.mark.parametrize("exc", TIMEOUTS, ids=ids(TIMEOUTS))
def test_timeouts_of_every_http_stack_are_recognised(exc: BaseException) -> None:
    assert is_transport_timeout(exc)
    assert is_transport_error(exc)


@pytest.mark.parametrize("exc", FAILURES, ids=ids(FAILURES))
def test_broken_connections_of_every_http_stack_are_recognised(exc: BaseException) -> None:
    assert is_transport_failure(exc)
    assert not is_transport_timeout(exc)
    assert is_transport_error(exc)


@pytest.mark.parametrize("exc", NOT_TRANSPORT, ids=ids(NOT_TRANSPORT))
def test_other_exceptions_are_not_transport_errors(exc: BaseException) -> None:
    assert not is_transport_timeout(exc)
    assert not is_transport_failure(exc)
    assert not is_transport_error(exc)


def test_a_subclass_of_a_known_transport_error_is_recognised_by_its_ancestry() -> None:
    class VendorConnectError(httpx.ConnectError):
        pass

    assert is_transport_failure(VendorConnectError("x"))


def check(error: MeshError, kind: type[MeshError], code: str, status: grpc.StatusCode) -> None:
    assert type(error) is kind
    assert (error.code, error.status) == (code, status)


@pytest.mark.parametrize("exc", TIMEOUTS, ids=ids(TIMEOUTS))
def test_transport_timeout_without_an_answer_is_a_provider_timeout(exc: BaseException) -> None:
    error = classify("openai", "gpt-x", exc)
    check(error, ProviderTimeout, "upstream_timeout", grpc.StatusCode.DEADLINE_EXCEEDED)
    assert error.message == "openai (model gpt-x) did not answer within its timeout"


@pytest.mark.parametrize("exc", FAILURES, ids=ids(FAILURES))
def test_unreachable_provider_is_unavailable(exc: BaseException) -> None:
    error = classify("bedrock", "claude", exc)
    check(error, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE)
    assert error.message == "bedrock (model claude) could not be reached"


def test_openai_timeout_is_a_timeout_although_it_is_also_a_connection_error() -> None:
    exc = openai.APITimeoutError(request=REQUEST)
    assert is_transport_failure(exc)
    assert type(classify("openai", "m", exc)) is ProviderTimeout


def test_unknown_error_without_an_answer_is_a_transient_provider_failure() -> None:
    error = classify("gemini", "flash", RuntimeError("something odd"))
    check(error, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE)
    assert error.message == "gemini (model flash) failed"


@pytest.mark.parametrize(
    ("status", "kind", "code", "grpc_status"),
    [
        (429, ProviderThrottled, "upstream_throttled", grpc.StatusCode.UNAVAILABLE),
        (401, ProviderAuthFailed, "upstream_auth_failed", grpc.StatusCode.INTERNAL),
        (403, ProviderAuthFailed, "upstream_auth_failed", grpc.StatusCode.INTERNAL),
        (408, ProviderTimeout, "upstream_timeout", grpc.StatusCode.DEADLINE_EXCEEDED),
        (504, ProviderTimeout, "upstream_timeout", grpc.StatusCode.DEADLINE_EXCEEDED),
        (400, ProviderRejected, "upstream_bad_request", grpc.StatusCode.INTERNAL),
        (404, ProviderRejected, "upstream_bad_request", grpc.StatusCode.INTERNAL),
        (422, ProviderRejected, "upstream_bad_request", grpc.StatusCode.INTERNAL),
        (499, ProviderRejected, "upstream_bad_request", grpc.StatusCode.INTERNAL),
        (500, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE),
        (502, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE),
        (503, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE),
        (529, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_http_status_decides_the_error(
    status: int, kind: type[MeshError], code: str, grpc_status: grpc.StatusCode
) -> None:
    check(classify("openai", "gpt-x", Exception(), status=status), kind, code, grpc_status)


def test_messages_name_the_provider_model_and_status() -> None:
    assert classify("openai", "gpt-x", Exception(), status=400).message == (
        "openai (model gpt-x) rejected the request (HTTP 400)"
    )
    assert classify("openai", "gpt-x", Exception(), status=502).message == (
        "openai (model gpt-x) failed (HTTP 502)"
    )
    assert classify("openai", "gpt-x", Exception(), status=408).message == (
        "openai (model gpt-x) timed out (HTTP 408)"
    )


def test_an_answered_status_wins_over_the_exception_class() -> None:
    # The provider answered (a status), so a timeout-named exception is not a transport timeout.
    error = classify("openai", "m", httpx.ReadTimeout("t"), status=500)
    assert type(error) is ProviderUnavailable
    assert type(classify("openai", "m", httpx.ConnectError("c"), status=401)) is ProviderAuthFailed


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 8192 tokens",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "Input is too long for requested model.",
        "context_length_exceeded",
        "The input exceeds the maximum number of tokens allowed",
        "Too many tokens in the request",
        "input exceeds the context window",
    ],
)
def test_a_4xx_about_length_is_prompt_too_long(message: str) -> None:
    error = classify("anthropic", "claude", Exception(), status=400, message=message)
    check(error, PromptTooLong, "prompt_too_long", grpc.StatusCode.INVALID_ARGUMENT)
    assert error.message == "the prompt is longer than anthropic (model claude) accepts"


@pytest.mark.parametrize(
    "message",
    [
        "Output blocked by content filtering policy",
        "content_filter",
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy",
        "Guardrail intervened",
        "blocked for SAFETY reasons",
    ],
)
def test_a_4xx_about_content_is_content_filtered(message: str) -> None:
    error = classify("openai", "gpt-x", Exception(), status=400, message=message)
    check(error, ContentFiltered, "content_filtered", grpc.StatusCode.INVALID_ARGUMENT)
    assert error.message == "openai (model gpt-x) refused the content"


def test_length_is_checked_before_content_in_one_message() -> None:
    message = "content_filter not applied: maximum context length exceeded"
    assert type(classify("openai", "m", Exception(), status=400, message=message)) is PromptTooLong


@pytest.mark.parametrize("status", [429, 500, 503])
def test_message_is_read_only_for_4xx_refusals(status: int) -> None:
    error = classify(
        "openai", "m", Exception(), status=status, message="maximum context length; content_filter"
    )
    assert type(error) not in (PromptTooLong, ContentFiltered)


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException"]
)
def test_throttling_provider_codes_are_throttled_whatever_the_status(code: str) -> None:
    assert type(classify("bedrock", "m", Exception(), status=400, provider_code=code)) is ProviderThrottled
    assert type(classify("bedrock", "m", Exception(), provider_code=code)) is ProviderThrottled


def test_unknown_provider_code_falls_back_to_the_status() -> None:
    error = classify("bedrock", "m", Exception(), status=400, provider_code="WeirdNewException")
    assert type(error) is ProviderRejected
    assert (
        type(classify("bedrock", "m", Exception(), provider_code="WeirdNewException")) is ProviderUnavailable
    )


def test_the_providers_own_words_never_reach_the_client_message() -> None:
    words = "Invalid value for 'messages[0]': user said 'my password is hunter2'"
    error = classify("openai", "gpt-x", Exception(), status=400, message=words)
    assert "hunter2" not in error.message
    assert error.message == "openai (model gpt-x) rejected the request (HTTP 400)"


def log_of(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    records = [r for r in caplog.records if r.name == "llmmesh.inference.providers"]
    assert len(records) == 1
    return records[0]


def test_the_failure_is_logged_once_with_its_classification(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmmesh.inference.providers")
    classify(
        "bedrock", "claude", Exception(), status=429, message="x" * 300, provider_code="ThrottlingException"
    )
    record = log_of(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "provider call failed: upstream_throttled"
    assert record.__dict__["provider"] == "bedrock"
    assert record.__dict__["model"] == "claude"
    assert record.__dict__["error_class"] == "upstream_throttled"
    assert record.__dict__["retryable"] is True
    assert record.__dict__["http_status"] == 429
    assert record.__dict__["provider_code"] == "ThrottlingException"
    assert record.__dict__["provider_message"] == "x" * 200


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (503, True), (504, True), (400, False), (401, False)],
)
def test_the_log_says_whether_the_failure_is_retried(
    caplog: pytest.LogCaptureFixture, status: int, retryable: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="llmmesh.inference.providers")
    classify("openai", "m", Exception(), status=status)
    assert log_of(caplog).__dict__["retryable"] is retryable


def test_without_a_provider_code_the_log_names_the_exception_class(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmmesh.inference.providers")
    classify("openai", "m", httpx.ConnectError("refused"))
    record = log_of(caplog)
    assert record.__dict__["provider_code"] == "ConnectError"
    assert record.__dict__["http_status"] is None
    assert record.__dict__["provider_message"] == ""


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
    ],
    ids=["ClientOSError", "ClientPayloadError"],
)
def test_gemini_on_aiohttp_reports_a_broken_connection_as_unavailable(exc: Exception) -> None:
    """google-genai runs on aiohttp when it is installed; its backend re-raises (as INTERNAL) what is
    neither an APIError nor a transport error, so these must count as transport errors."""
    pytest.importorskip("google.genai")
    from services.inference.backends.gemini import GeminiBackend

    backend = cast(Any, SimpleNamespace(provider="gemini", name="flash"))
    error = GeminiBackend._error(backend, exc)
    check(error, ProviderUnavailable, "upstream_unavailable", grpc.StatusCode.UNAVAILABLE)
    assert error.message == "gemini (model flash) could not be reached"

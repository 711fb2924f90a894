"""Tier outcomes: how a failed attempt is classified (retry, fall back, fail) and what a route then does.

The pure pieces (`outcome_of`, how an inference RPC error is read, the final error, the backoff) are
tested directly; the retry/fallback loop is driven with in-memory pools that answer from a script,
so no server, socket or sleep is involved.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.client import error_of
from services.common.errors import (
    ERROR_CODE_KEY,
    DeadlineExceeded,
    IncompleteGeneration,
    InvalidArgument,
    InvalidGenerationRequest,
    MeshError,
    ModelNotFound,
    RemoteError,
    UpstreamError,
)
from services.common.registry import DEFAULT_POOL, parse_registry
from services.inference import errors as inference_errors
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.errors import (
    AllTiersFailed,
    EmptyModelResponse,
    GenerationTimeout,
    NoTierAvailable,
)
from services.orchestrator.routing import Outcome, Route, Router, outcome_of

# --- outcome_of -------------------------------------------------------------------------------------


def remote(kind: type[MeshError]) -> RemoteError:
    """The error as the orchestrator receives it from inference: status and code, not the class."""
    return RemoteError(kind.status, kind.code, "from inference")


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        # transient: retry, then fall back
        (remote(inference_errors.ProviderThrottled), Outcome.RETRY),
        (remote(inference_errors.ProviderUnavailable), Outcome.RETRY),
        (remote(inference_errors.ProviderTimeout), Outcome.RETRY),
        (remote(inference_errors.ModelNotLoaded), Outcome.RETRY),
        (remote(inference_errors.ModelLoadFailed), Outcome.RETRY),
        (IncompleteGeneration("stream ended"), Outcome.RETRY),
        (EmptyModelResponse("empty"), Outcome.RETRY),
        (RemoteError(grpc.StatusCode.UNAVAILABLE, "unavailable", "pool down"), Outcome.RETRY),
        # this tier cannot serve now: the next one at once
        (remote(inference_errors.ModelBusy), Outcome.FALL_BACK),
        (remote(inference_errors.NoModelSlot), Outcome.FALL_BACK),
        (UpstreamError("crashed"), Outcome.FALL_BACK),
        # permanent: another tier would fail the same way
        (remote(inference_errors.ProviderAuthFailed), Outcome.FAIL),
        (remote(inference_errors.ProviderRejected), Outcome.FAIL),
        (remote(inference_errors.ContentFiltered), Outcome.FAIL),
        (remote(inference_errors.PromptTooLong), Outcome.FAIL),
        (remote(ModelNotFound), Outcome.FAIL),
        (remote(InvalidGenerationRequest), Outcome.FAIL),
        (InvalidArgument("bad field"), Outcome.FAIL),
        # our own deadline is spent: no retry, no fallback
        (GenerationTimeout("too slow"), Outcome.FAIL),
        (DeadlineExceeded("too slow"), Outcome.FAIL),
        (RemoteError(grpc.StatusCode.INTERNAL, "internal", "bug"), Outcome.FAIL),
    ],
    ids=lambda value: value.code if isinstance(value, MeshError) else value.value,
)
def test_outcome_of_each_failure(error: MeshError, outcome: Outcome) -> None:
    assert outcome_of(error) is outcome


def test_an_empty_reply_is_retried_although_its_status_alone_would_fail() -> None:
    error = EmptyModelResponse("empty")
    assert error.status == grpc.StatusCode.INTERNAL
    assert outcome_of(RemoteError(error.status, error.code, "")) is Outcome.FAIL
    assert outcome_of(error) is Outcome.RETRY


def test_deadline_is_retried_only_when_the_provider_timed_out() -> None:
    assert outcome_of(RemoteError(grpc.StatusCode.DEADLINE_EXCEEDED, "upstream_timeout", "")) is Outcome.RETRY
    assert outcome_of(RemoteError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline_exceeded", "")) is Outcome.FAIL


# --- an inference RPC error read as a tier failure --------------------------------------------------


def rpc_error(status: grpc.StatusCode, code: str = "", details: str = "details") -> RemoteError:
    """A failed inference call as the typed client raises it, from the gRPC error it received."""
    trailing = grpc.aio.Metadata((ERROR_CODE_KEY, code)) if code else grpc.aio.Metadata()
    return error_of(grpc.aio.AioRpcError(status, grpc.aio.Metadata(), trailing, details))


def test_our_deadline_passing_is_a_generation_timeout() -> None:
    error = Router._error_of(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), "local", DEFAULT_POOL, 2.5)
    assert type(error) is GenerationTimeout
    assert error.message == "the generation did not finish within 2.5 s"
    assert outcome_of(error) is Outcome.FAIL


def test_limit_in_the_timeout_message_drops_a_zero_fraction() -> None:
    error = Router._error_of(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED), "local", DEFAULT_POOL, 30.0)
    assert error.message == "the generation did not finish within 30 s"


def test_a_provider_timeout_keeps_its_code_and_is_retried() -> None:
    error = Router._error_of(
        rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "upstream_timeout", "openai timed out"), "m", "p", 30
    )
    assert (error.status, error.code, error.message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "upstream_timeout",
        "openai timed out",
    )
    assert outcome_of(error) is Outcome.RETRY


@pytest.mark.parametrize("status", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
def test_a_backend_that_crashed_without_a_code_is_an_upstream_error_and_falls_back(
    status: grpc.StatusCode,
) -> None:
    error = Router._error_of(rpc_error(status, details="Traceback ..."), "local", DEFAULT_POOL, 30)
    assert type(error) is UpstreamError
    assert error.code == "upstream_error"
    assert error.message == "model local failed to generate a response"
    assert outcome_of(error) is Outcome.FALL_BACK


def test_an_internal_error_with_a_code_of_its_own_is_kept_and_fails() -> None:
    error = Router._error_of(
        rpc_error(grpc.StatusCode.INTERNAL, "upstream_auth_failed", "bad key"), "m", "p", 30
    )
    assert (error.code, error.message) == ("upstream_auth_failed", "bad key")
    assert outcome_of(error) is Outcome.FAIL


def test_an_unreachable_pool_is_unavailable_with_a_generic_message() -> None:
    error = Router._error_of(
        rpc_error(grpc.StatusCode.UNAVAILABLE, details="connect failed 10.0.0.7"), "m", "p", 30
    )
    assert (error.code, error.message) == ("unavailable", "a downstream service is unavailable")
    assert outcome_of(error) is Outcome.RETRY


# --- the error of a request no tier could serve -----------------------------------------------------

ROUTE = Route("default", ())


def test_with_one_model_tried_its_own_error_is_raised() -> None:
    busy = remote(inference_errors.ModelBusy)
    assert Router._exhausted(ROUTE, [("local", busy)]) is busy


def test_with_no_model_tried_no_tier_was_available() -> None:
    error = Router._exhausted(ROUTE, [])
    assert type(error) is NoTierAvailable
    assert error.message == "route 'default': no tier could serve the request"


def test_several_failures_with_a_provider_among_them_are_all_tiers_failed() -> None:
    error = Router._exhausted(
        ROUTE,
        [
            ("local", remote(inference_errors.NoModelSlot)),
            ("cloud", remote(inference_errors.ProviderUnavailable)),
        ],
    )
    assert type(error) is AllTiersFailed
    assert (error.status, error.code) == (grpc.StatusCode.UNAVAILABLE, "upstream_all_tiers_failed")
    assert error.message == (
        "route 'default': every tier failed (local: model_slots_busy; cloud: upstream_unavailable)"
    )


def test_several_failures_of_our_own_pools_only_are_no_tier_available() -> None:
    error = Router._exhausted(
        ROUTE, [("a", remote(inference_errors.ModelBusy)), ("b", remote(inference_errors.ModelNotLoaded))]
    )
    assert type(error) is NoTierAvailable
    assert (
        error.message
        == "route 'default': no tier could serve the request (a: model_busy; b: model_not_loaded)"
    )


# --- the route, tier by tier ------------------------------------------------------------------------

Attempt: TypeAlias = list[inference_pb2.GenerateResponse] | RemoteError | tuple[str, RemoteError]


def reply(text: str, model: str = "") -> list[inference_pb2.GenerateResponse]:
    return [
        inference_pb2.GenerateResponse(delta=common_pb2.TokenDelta(text=text)),
        inference_pb2.GenerateResponse(
            result=common_pb2.GenerationResult(
                text=text, model=model, finish_reason=common_pb2.FINISH_REASON_STOP
            )
        ),
    ]


UNAVAILABLE = rpc_error(grpc.StatusCode.UNAVAILABLE, "upstream_unavailable", "provider 503")
BUSY = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "model_slots_busy", "slots busy")
CRASHED = rpc_error(grpc.StatusCode.INTERNAL, details="Traceback")
AUTH = rpc_error(grpc.StatusCode.INTERNAL, "upstream_auth_failed", "bad key")
EMPTY = [
    inference_pb2.GenerateResponse(delta=common_pb2.TokenDelta(text=" ")),
    inference_pb2.GenerateResponse(result=common_pb2.GenerationResult(text=" \n")),
]


@dataclass
class ScriptedPool:
    """An inference pool whose models answer each call with the next attempt of their script."""

    scripts: dict[str, list[Attempt]]
    calls: list[str] = field(default_factory=list)

    async def generate(
        self, request: inference_pb2.GenerateRequest, timeout_s: float | None
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        """As InferenceClient.generate: the responses, or the error the client raises."""
        assert timeout_s is not None and timeout_s > 0
        self.calls.append(request.model)
        attempt = self.scripts[request.model].pop(0)
        if isinstance(attempt, RemoteError):
            raise attempt
        if isinstance(attempt, tuple):  # text first, then the failure
            for response in reply(attempt[0])[:1]:
                yield response
            raise attempt[1]
        for response in attempt:
            yield response


@dataclass
class Routed:
    router: Router
    pool: ScriptedPool
    backoffs: list[int]


REGISTRY = parse_registry(
    {
        "models": {name: {"backend": "llama_cpp"} for name in ("local", "cloud", "spare")},
        "canned": {"greetings": [{"match": r"^hi$", "reply": "Hello!"}]},
        "routes": {
            "default": [{"canned": "greetings"}, {"model": "local"}, {"model": "cloud"}],
            "three": [{"model": "local"}, {"model": "cloud"}, {"model": "spare"}],
        },
    }
)


def routed(monkeypatch: pytest.MonkeyPatch, backoff_s: float = 0.0, **scripts: list[Attempt]) -> Routed:
    pool = ScriptedPool({name: list(attempts) for name, attempts in scripts.items()})
    settings = OrchestratorSettings(
        generation_timeout_s=30, retry_attempts=3, retry_backoff_s=0.25, retry_max_backoff_s=2
    )
    router = Router(REGISTRY, {DEFAULT_POOL: pool}, settings)  # type: ignore[dict-item]
    backoffs: list[int] = []

    def backoff(attempt: int) -> float:
        backoffs.append(attempt)
        return backoff_s

    monkeypatch.setattr(router, "_backoff", backoff)
    return Routed(router, pool, backoffs)


async def collect(
    router: Router, model: str = "", prompt: str = "tell me"
) -> tuple[list[str], common_pb2.GenerationResult]:
    deltas, result = [], common_pb2.GenerationResult()
    async for event in router.stream(orchestrator_pb2.GenerationSpec(model=model, prompt=prompt)):
        if event.HasField("result"):
            result = event.result
        else:
            deltas.append(event.delta.text)
    return deltas, result


async def failure(router: Router, model: str = "", seen: Callable[[str], Any] | None = None) -> MeshError:
    with pytest.raises(MeshError) as caught:
        async for event in router.stream(orchestrator_pb2.GenerationSpec(model=model, prompt="tell me")):
            if seen and event.HasField("delta"):
                seen(event.delta.text)
    return caught.value


async def test_a_canned_reply_calls_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch)
    deltas, result = await collect(mesh.router, prompt="hi")
    assert deltas == ["Hello!"]
    assert (result.text, result.model, result.route, result.tier) == (
        "Hello!",
        "canned:greetings",
        "default",
        0,
    )
    assert mesh.pool.calls == []


async def test_the_first_model_serves_and_the_result_names_its_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[reply("from local", "local")])
    deltas, result = await collect(mesh.router)
    assert deltas == ["from local"]
    assert (result.text, result.route, result.tier) == ("from local", "default", 1)
    assert mesh.pool.calls == ["local"]


async def test_a_transient_failure_is_retried_with_backoff_on_the_same_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = routed(monkeypatch, local=[UNAVAILABLE, UNAVAILABLE, reply("third time")])
    _, result = await collect(mesh.router)
    assert (result.text, result.tier) == ("third time", 1)
    assert mesh.pool.calls == ["local", "local", "local"]
    assert mesh.backoffs == [1, 2]


async def test_a_tier_that_keeps_failing_transiently_falls_back_after_its_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = routed(monkeypatch, local=[UNAVAILABLE] * 3, cloud=[reply("from cloud")])
    _, result = await collect(mesh.router)
    assert (result.text, result.tier) == ("from cloud", 2)
    assert mesh.pool.calls == ["local"] * 3 + ["cloud"]
    assert mesh.backoffs == [1, 2]


@pytest.mark.parametrize("error", [BUSY, CRASHED], ids=["busy", "crashed"])
async def test_a_busy_or_crashed_tier_falls_back_at_once(
    monkeypatch: pytest.MonkeyPatch, error: RemoteError
) -> None:
    mesh = routed(monkeypatch, local=[error], cloud=[reply("from cloud")])
    _, result = await collect(mesh.router)
    assert (result.text, result.tier) == ("from cloud", 2)
    assert mesh.pool.calls == ["local", "cloud"]
    assert mesh.backoffs == []


async def test_a_permanent_failure_ends_the_request_without_trying_the_next_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = routed(monkeypatch, local=[AUTH], cloud=[reply("never")])
    error = await failure(mesh.router)
    assert (error.code, error.message) == ("upstream_auth_failed", "bad key")
    assert mesh.pool.calls == ["local"]


async def test_our_deadline_passing_ends_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)], cloud=[reply("never")])
    error = await failure(mesh.router)
    assert type(error) is GenerationTimeout
    assert mesh.pool.calls == ["local"]


async def test_an_empty_reply_is_retried_once_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[EMPTY, reply("second try")])
    deltas, result = await collect(mesh.router)
    assert deltas == ["second try"]  # the blank delta of the empty reply never reached the client
    assert result.text == "second try"
    assert mesh.pool.calls == ["local", "local"]
    assert mesh.backoffs == []


async def test_two_empty_replies_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[EMPTY, EMPTY], cloud=[reply("from cloud")])
    _, result = await collect(mesh.router)
    assert (result.text, result.tier) == ("from cloud", 2)
    assert mesh.pool.calls == ["local", "local", "cloud"]


async def test_two_empty_replies_of_the_only_model_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[EMPTY, EMPTY])
    error = await failure(mesh.router, model="local")
    assert type(error) is EmptyModelResponse
    assert error.message == "model local returned an empty response twice"


async def test_a_stream_that_ends_without_a_result_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    cut_off = [inference_pb2.GenerateResponse(delta=common_pb2.TokenDelta(text="   "))]
    mesh = routed(monkeypatch, local=[cut_off, reply("whole")])
    _, result = await collect(mesh.router)
    assert result.text == "whole"
    assert mesh.backoffs == [1]


async def test_no_other_model_follows_text_the_client_already_has(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[("partial", UNAVAILABLE)], cloud=[reply("never")])
    seen: list[str] = []
    error = await failure(mesh.router, seen=seen.append)
    assert seen == ["partial"]
    assert (error.code, error.message) == ("upstream_unavailable", "provider 503")
    assert mesh.pool.calls == ["local"]


async def test_a_backoff_that_would_pass_the_deadline_falls_back_instead_of_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mesh = routed(monkeypatch, backoff_s=1e6, local=[UNAVAILABLE], cloud=[reply("from cloud")])
    _, result = await collect(mesh.router)
    assert result.text == "from cloud"
    assert mesh.pool.calls == ["local", "cloud"]
    assert mesh.backoffs == [1]


async def test_every_tier_failing_names_each_models_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[BUSY], cloud=[UNAVAILABLE] * 3, spare=[CRASHED])
    error = await failure(mesh.router, model="three")
    assert type(error) is AllTiersFailed
    assert error.message == (
        "route 'three': every tier failed "
        "(local: model_slots_busy; cloud: upstream_unavailable; spare: upstream_error)"
    )
    assert mesh.pool.calls == ["local", "cloud", "cloud", "cloud", "spare"]


async def test_a_one_model_route_fails_with_that_models_error(monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = routed(monkeypatch, local=[BUSY])
    error = await failure(mesh.router, model="local")
    assert (error.status, error.code, error.message) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "model_slots_busy",
        "slots busy",
    )


# --- backoff ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 2.0), (10, 2.0)]
)
def test_backoff_doubles_up_to_its_ceiling_with_jitter_down_to_half(
    monkeypatch: pytest.MonkeyPatch, attempt: int, ceiling: float
) -> None:
    settings = OrchestratorSettings(retry_backoff_s=0.25, retry_max_backoff_s=2)
    router = Router(REGISTRY, {}, settings)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert router._backoff(attempt) == pytest.approx(ceiling)
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert router._backoff(attempt) == pytest.approx(ceiling / 2)

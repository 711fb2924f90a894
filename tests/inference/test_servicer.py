"""Inference service on a real grpc.aio server (port 0) with the real Gemma 3 270M model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from services.common.registry import Registry, parse_registry
from services.inference.backends import create_backend
from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings
from services.inference.server import create_server
from tests.support.fakes import ScriptedBackend
from tests.support.mesh import channel_to, error_code, running, scripted_registry

MODEL = "gemma-3-270m"

# These tests hold for an engine that serves one request at a time, in arrival order, with the same
# greedy text for the same request: llama-cpp-python's Llama, and xllamacpp in its deterministic mode
# (one slot, no prefix reuse). The batched mode has its own tests in test_xllamacpp.py.
ENGINES = {
    "xllamacpp-deterministic": {"engine": "xllamacpp", "deterministic": True},
    "llama_cpp": {"engine": "llama_cpp"},
}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "llama_cpp":
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llama-cpp extra)")
    return ENGINES[request.param]


def registry(model_path: Path, engine: dict[str, object], **models: dict[str, object]) -> Registry:
    """The packaged Gemma with a 512-token window on `engine`, plus any other models."""
    gemma = {"backend": "llama_cpp", "path": str(model_path), "context_length": 512, **engine}
    return parse_registry({"models": {MODEL: gemma, **models}})


def settings(**overrides: object) -> InferenceSettings:
    return InferenceSettings(port=0, **overrides)


@dataclass
class Inference:
    stub: inference_pb2_grpc.InferenceServiceStub
    backend: Backend
    channel: grpc.aio.Channel


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def inference(model_path: Path, engine: dict[str, object]) -> AsyncIterator[Inference]:
    models = registry(model_path, engine)
    backend = create_backend(MODEL, models.models[MODEL], settings())
    server, port = create_server(settings(), models, [backend])
    async with running(server), channel_to(port) as channel:
        yield Inference(inference_pb2_grpc.InferenceServiceStub(channel), backend, channel)


def chat(
    text: str, max_tokens: int = 16, temperature: float | None = 0.0, **params: object
) -> inference_pb2.GenerateRequest:
    return inference_pb2.GenerateRequest(
        model=MODEL,
        conversation=common_pb2.Conversation(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]
        ),
        params=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=temperature, **params),
    )


async def collect(
    call: grpc.aio.UnaryStreamCall,
) -> tuple[list[common_pb2.TokenDelta], common_pb2.GenerationResult]:
    deltas, results = [], []
    async for response in call:
        (deltas if response.HasField("delta") else results).append(
            response.delta if response.HasField("delta") else response.result
        )
    assert len(results) == 1, "exactly one final result, after the deltas"
    return deltas, results[0]


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_streams_deltas_then_a_result_that_adds_up(inference) -> None:
    stub = inference.stub
    deltas, result = await collect(stub.Generate(chat("Name three colours.", max_tokens=24)))
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == result.text
    assert result.text.strip()
    assert sum(d.tokens for d in deltas) <= result.usage.completion_tokens <= 24
    assert result.usage.prompt_tokens > 5
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens
    assert result.model == MODEL
    assert result.finish_reason in (common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH)


async def test_temperature_zero_is_deterministic_and_max_tokens_is_a_hard_limit(inference) -> None:
    stub = inference.stub
    _, first = await collect(stub.Generate(chat("Write a haiku about the sea", max_tokens=7)))
    _, second = await collect(stub.Generate(chat("Write a haiku about the sea", max_tokens=7)))
    assert first.text == second.text
    assert first.usage.completion_tokens == 7
    assert first.finish_reason == common_pb2.FINISH_REASON_LENGTH


async def test_raw_prompt_skips_the_turn_template(inference) -> None:
    stub = inference.stub
    templated = chat("The capital of France is", max_tokens=4)
    raw = inference_pb2.GenerateRequest(
        model=MODEL, prompt="The capital of France is", params=templated.params
    )
    _, raw_result = await collect(stub.Generate(raw))
    _, chat_result = await collect(stub.Generate(templated))
    # The template adds the turn markers around the same text.
    assert chat_result.usage.prompt_tokens > raw_result.usage.prompt_tokens
    assert raw_result.text.strip()


async def test_stop_string_ends_the_generation_and_is_not_returned(inference) -> None:
    stub = inference.stub
    _, free = await collect(stub.Generate(chat("Write a haiku about the sea", max_tokens=12)))
    words = free.text.split()
    assert len(words) >= 3
    stop = words[2]
    deltas, stopped = await collect(
        stub.Generate(chat("Write a haiku about the sea", max_tokens=12, stop=[stop]))
    )
    assert stopped.finish_reason == common_pb2.FINISH_REASON_STOP
    assert stopped.stop_sequence == stop and free.stop_sequence == ""
    assert stop not in stopped.text
    assert free.text.startswith(stopped.text)
    assert "".join(d.text for d in deltas) == stopped.text


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (
            inference_pb2.GenerateRequest(model="no-such-model", prompt="hi"),
            grpc.StatusCode.NOT_FOUND,
            "model_not_found",
        ),
        (
            inference_pb2.GenerateRequest(prompt="hi"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_generation_request",
        ),
        (
            inference_pb2.GenerateRequest(model=MODEL),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_generation_request",
        ),
        (
            inference_pb2.GenerateRequest(model=MODEL, prompt=""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_generation_request",
        ),
        (
            inference_pb2.GenerateRequest(
                model=MODEL, prompt="hi", params=common_pb2.SamplingParams(max_tokens=-1)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_generation_request",
        ),
        (
            inference_pb2.GenerateRequest(
                model=MODEL, prompt="hi", params=common_pb2.SamplingParams(temperature=3)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_generation_request",
        ),
        (
            inference_pb2.GenerateRequest(model=MODEL, prompt="word " * 2000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "prompt_too_long",
        ),
    ],
    ids=[
        "unknown-model",
        "no-model",
        "no-input",
        "empty-prompt",
        "negative-max-tokens",
        "temperature",
        "too-long",
    ],
)
async def test_bad_requests_get_a_status_and_a_stable_code(inference, request_, status, code) -> None:
    stub = inference.stub
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stub.Generate(request_))
    assert caught.value.code() == status
    assert error_code(caught.value) == code
    assert caught.value.details()


async def test_prompt_too_long_names_the_limit(inference) -> None:
    stub = inference.stub
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stub.Generate(inference_pb2.GenerateRequest(model=MODEL, prompt="word " * 2000)))
    assert "at most 511 prompt tokens" in caught.value.details()


async def test_count_tokens_is_the_prompt_tokens_a_generation_reads(inference) -> None:
    stub = inference.stub
    request = chat("Write a haiku about the sea", max_tokens=1)
    _, generated = await collect(stub.Generate(request))
    counted = await stub.CountTokens(
        inference_pb2.CountTokensRequest(model=MODEL, conversation=request.conversation)
    )
    raw = await stub.CountTokens(inference_pb2.CountTokensRequest(model=MODEL, prompt="Write a haiku"))
    assert (counted.prompt_tokens, counted.model) == (generated.usage.prompt_tokens, MODEL)
    # A raw prompt is counted as is: BOS and its own tokens, no turn template around it.
    assert 2 <= raw.prompt_tokens < counted.prompt_tokens
    with pytest.raises(grpc.aio.AioRpcError) as last_is_assistant:
        await stub.CountTokens(
            inference_pb2.CountTokensRequest(
                model=MODEL,
                conversation=common_pb2.Conversation(
                    messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, content="hi")]
                ),
            )
        )
    assert last_is_assistant.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_closing_the_stream_stops_the_generation(inference) -> None:
    stub, backend = inference.stub, inference.backend
    before = backend.tokens_generated  # type: ignore[attr-defined]
    call = stub.Generate(chat("Write a haiku about the sea", max_tokens=400))
    received = 0
    async for _ in call:
        received += 1
        if received == 3:
            break
    call.cancel()
    # The model is held until the cancelled generation has stopped, so this one runs after it.
    _, result = await collect(stub.Generate(chat("Hello", max_tokens=2)))
    assert result.usage.completion_tokens == 2
    generated = backend.tokens_generated - before  # type: ignore[attr-defined]
    assert generated < 3 + 20 + 2, "the cancelled generation ran on"


async def test_concurrent_requests_are_served_in_arrival_order(inference) -> None:
    stub = inference.stub
    finished: list[str] = []

    async def run(name: str, max_tokens: int) -> None:
        await collect(stub.Generate(chat("Write a haiku about the sea", max_tokens=max_tokens)))
        finished.append(name)

    first = asyncio.create_task(run("first", 40))
    await asyncio.sleep(0.2)  # let "first" take the model before the others queue up
    others = []
    for name in ("second", "third", "fourth"):
        others.append(asyncio.create_task(run(name, 3)))
        await asyncio.sleep(0.02)
    await asyncio.gather(first, *others)
    assert finished == ["first", "second", "third", "fourth"]


async def test_health_answers_while_the_model_generates(inference) -> None:
    stub = inference.stub
    call = stub.Generate(chat("Write a haiku about the sea", max_tokens=200))
    await call.read()  # the generation is under way
    health = health_pb2_grpc.HealthStub(inference.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert call.done() is False, "health was answered before the generation finished"
    call.cancel()


async def test_list_models_reports_the_loaded_model(inference) -> None:
    stub = inference.stub
    response = await stub.ListModels(inference_pb2.ListModelsRequest())
    assert [
        (m.name, m.backend, m.loaded, m.context_length, list(m.capabilities)) for m in response.models
    ] == [(MODEL, "llama_cpp", True, 512, ["generate"])]


async def test_full_queue_is_refused_with_resource_exhausted(
    model_path: Path, engine: dict[str, object]
) -> None:
    server, port = create_server(settings(max_waiting=1), registry(model_path, engine))
    async with running(server), channel_to(port) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        running_call = stub.Generate(chat("Write a haiku about the sea", max_tokens=200))
        await running_call.read()
        waiting_call = stub.Generate(chat("Hello", max_tokens=2))
        waiting = asyncio.create_task(collect(waiting_call))
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(stub.Generate(chat("Hello", max_tokens=2)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_code(caught.value) == "model_busy"
        running_call.cancel()
        _, result = await waiting
        assert result.usage.completion_tokens == 2


async def test_not_serving_until_the_model_is_loaded() -> None:
    gate = asyncio.Event()
    server, port = create_server(settings(), scripted_registry(), [ScriptedBackend(load_gate=gate)])
    starting = asyncio.create_task(server.start())
    async with channel_to(port) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        response = await health.Check(request, timeout=5, wait_for_ready=True)
        assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        gate.set()
        await starting
        response = await health.Check(request, timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        named = await health.Check(
            health_pb2.HealthCheckRequest(service="llmmesh.inference.v1.InferenceService"), timeout=5
        )
        assert named.status == health_pb2.HealthCheckResponse.SERVING
    await server.stop()


async def test_a_local_models_tokens_within_the_stream_interval_come_as_one_delta() -> None:
    backend = ScriptedBackend()
    backend.stream_interval_s = 1.0  # longer than the whole stream: only its end cuts the wait short
    server, port = create_server(settings(), scripted_registry(), [backend])
    async with running(server), channel_to(port) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = inference_pb2.GenerateRequest(model="scripted", prompt="slow 8")  # a piece every 50 ms
        deltas, result = await collect(stub.Generate(request, timeout=10))
        assert [(d.text, d.tokens) for d in deltas] == [("t0 ", 1), ("t1 t2 t3 t4 t5 t6 t7 ", 7)]
        assert result.text == "t0 t1 t2 t3 t4 t5 t6 t7 " and result.usage.completion_tokens == 8
        failing = stub.Generate(inference_pb2.GenerateRequest(model="scripted", prompt="fail midway"))
        texts = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for response in failing:
                texts.append(response.delta.text)
        assert "".join(texts) == "partial output ", "the text before the failure is sent, then the error"
        assert caught.value.code() == grpc.StatusCode.INTERNAL


async def test_an_on_demand_embedding_model_loads_at_first_use(
    model_path: Path, engine: dict[str, object]
) -> None:
    embedder = {
        "backend": "llama_cpp",
        "path": str(model_path),
        "task": "embed",
        "load": "on_demand",
        **engine,
    }
    server, port = create_server(settings(), registry(model_path, engine, **{"gemma-embed": embedder}))
    async with running(server), channel_to(port) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        listed = {m.name: m for m in (await stub.ListModels(inference_pb2.ListModelsRequest())).models}
        assert (listed["gemma-embed"].loaded, list(listed["gemma-embed"].capabilities)) == (False, ["embed"])
        texts = ["the sea at night", "the ocean after dark", "quarterly tax law"]
        response = await stub.Embed(inference_pb2.EmbedRequest(model="gemma-embed", inputs=texts))
        vectors = [list(e.values) for e in response.embeddings]
        assert len(vectors) == 3 and {len(v) for v in vectors} == {640}
        assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vectors), "unit length"
        assert vectors[0] != vectors[1] != vectors[2]
        assert response.prompt_tokens > 0
        again = await stub.Embed(inference_pb2.EmbedRequest(model="gemma-embed", inputs=texts[:1]))
        alone = list(again.embeddings[0].values)
        assert sum(x * y for x, y in zip(alone, vectors[0], strict=True)) > 0.999, "same text, same direction"
        listed = {m.name: m for m in (await stub.ListModels(inference_pb2.ListModelsRequest())).models}
        assert listed["gemma-embed"].loaded
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(stub.Generate(inference_pb2.GenerateRequest(model="gemma-embed", prompt="hi")))
        assert error_code(caught.value) == "unsupported_task"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Embed(inference_pb2.EmbedRequest(model=MODEL, inputs=["x"]))
        assert error_code(caught.value) == "unsupported_task"

"""Orchestrator on a real grpc.aio server, calling a real inference server that hosts the scripted backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.common.config import ConfigError
from services.inference.config import InferenceSettings
from services.inference.server import create_server as create_inference
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.server import create_server as create_orchestrator
from tests.support.fakes import ScriptedBackend
from tests.support.mesh import channel_to, error_code, eventually, running, scripted_registry


@dataclass
class Mesh:
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub
    backend: ScriptedBackend


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    backend = ScriptedBackend()
    registry = scripted_registry()
    inference, inference_port = create_inference(InferenceSettings(port=0), registry, [backend])
    orchestrator, port = create_orchestrator(
        OrchestratorSettings(port=0, inference_addr=f"127.0.0.1:{inference_port}", generation_timeout_s=0.5),
        registry,
    )
    async with running(inference), running(orchestrator), channel_to(port) as channel:
        yield Mesh(orchestrator_pb2_grpc.OrchestratorServiceStub(channel), backend)


def spec(prompt: str, **fields: object) -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(prompt=prompt, **fields)


async def test_unary_generation_returns_the_whole_text_and_sends_the_chat_turns(mesh: Mesh) -> None:
    response = await mesh.stub.RunGeneration(
        orchestrator_pb2.RunGenerationRequest(
            spec=spec(
                "hello there", system="be brief", params=common_pb2.SamplingParams(max_tokens=9, seed=7)
            )
        ),
        metadata=(("x-request-id", "req-123"),),
    )
    assert response.result.text == "echo: hello there"
    assert response.result.model == "scripted"
    assert response.result.usage.completion_tokens == 3
    (call,) = mesh.backend.calls
    assert [(m.role, m.content) for m in call.request.messages] == [
        ("system", "be brief"),
        ("user", "hello there"),
    ]
    assert call.request.sampling.max_tokens == 9
    assert call.request.sampling.seed == 7
    assert call.request_id == "req-123", "the request id travels gateway → orchestrator → inference"


async def test_stream_relays_every_delta_in_order_then_the_result(mesh: Mesh) -> None:
    events = [
        event
        async for event in mesh.stub.StreamGeneration(
            orchestrator_pb2.StreamGenerationRequest(spec=spec("one two three"))
        )
    ]
    assert [e.delta.text for e in events[:-1]] == ["echo: ", "one ", "two ", "three"]
    assert events[-1].result.text == "echo: one two three"
    assert events[-1].result.finish_reason == common_pb2.FINISH_REASON_STOP


async def test_a_request_without_id_gets_one(mesh: Mesh) -> None:
    await mesh.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec("hi")))
    assert len(mesh.backend.calls[0].request_id) == 32


async def test_deadline_gives_deadline_exceeded_with_a_clear_message(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec("stall")))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_code(caught.value) == "generation_timeout"
    assert caught.value.details() == "the generation did not finish within 0.5 s"


async def test_callers_shorter_deadline_wins(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec("stall")), timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_inference_errors_keep_their_status_and_code(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec("hi", model="nope")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_code(caught.value) == "model_not_found"
    assert "'nope'" in caught.value.details()


async def test_blank_prompt_is_invalid(mesh: Mesh) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mesh.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec("   ")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(caught.value) == "invalid_generation_request"
    assert mesh.backend.calls == []


async def test_backend_crash_midway_is_an_upstream_error_without_internals(mesh: Mesh) -> None:
    call = mesh.stub.StreamGeneration(orchestrator_pb2.StreamGenerationRequest(spec=spec("fail midway")))
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in call:
            received.append(event.delta.text)
    assert received == ["partial ", "output "]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert error_code(caught.value) == "upstream_error"
    assert caught.value.details() == "model scripted failed to generate a response"
    assert "crashed" not in str(caught.value.trailing_metadata())


async def test_cancelling_the_stream_cancels_the_model(mesh: Mesh) -> None:
    call = mesh.stub.StreamGeneration(orchestrator_pb2.StreamGenerationRequest(spec=spec("slow 100")))
    await call.read()
    call.cancel()
    await eventually(lambda: mesh.backend.calls[0].cancelled)
    assert mesh.backend.calls[0].cancelled


async def test_count_tokens_counts_on_the_model_of_the_spec(mesh: Mesh) -> None:
    counted = await mesh.stub.CountTokens(
        orchestrator_pb2.CountTokensRequest(spec=spec("three words here", system="be brief"))
    )
    # The scripted model counts a word a token, the system turn included; nothing is generated.
    assert (counted.prompt_tokens, counted.model) == (5, "scripted")
    assert mesh.backend.calls == []
    with pytest.raises(grpc.aio.AioRpcError) as blank:
        await mesh.stub.CountTokens(orchestrator_pb2.CountTokensRequest(spec=spec("  ")))
    assert blank.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await mesh.stub.CountTokens(orchestrator_pb2.CountTokensRequest(spec=spec("hi", model="nope")))
    assert (unknown.value.code(), error_code(unknown.value)) == (grpc.StatusCode.NOT_FOUND, "model_not_found")


async def test_unreachable_inference_is_unavailable(unused_port: int) -> None:
    orchestrator, port = create_orchestrator(
        OrchestratorSettings(port=0, inference_addr=f"127.0.0.1:{unused_port}")
    )
    async with running(orchestrator), channel_to(port) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await orchestrator_pb2_grpc.OrchestratorServiceStub(channel).RunGeneration(
                orchestrator_pb2.RunGenerationRequest(spec=spec("hi"))
            )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_code(caught.value) == "unavailable"
    assert caught.value.details() == "a downstream service is unavailable"


async def test_start_fails_when_a_pool_lacks_a_model_the_registry_puts_in_it() -> None:
    """The orchestrator's registry and the pool's differ: the start fails, naming model and pool."""
    hosted = scripted_registry("scripted")
    inference, inference_port = create_inference(InferenceSettings(port=0), hosted, [ScriptedBackend()])
    expected = scripted_registry("scripted", "missing")
    orchestrator, _ = create_orchestrator(
        OrchestratorSettings(port=0, inference_addr=f"127.0.0.1:{inference_port}"), expected
    )
    async with running(inference):
        with pytest.raises(ConfigError, match=r"pool 'default' does not serve missing.*LLM_MESH_REGISTRY"):
            await orchestrator.start()
        await orchestrator.stop()


async def test_start_goes_on_when_a_pool_does_not_answer_yet(unused_port: int) -> None:
    """Pools may start after the orchestrator: an unreachable one is a warning, and it serves."""
    orchestrator, port = create_orchestrator(
        OrchestratorSettings(port=0, inference_addr=f"127.0.0.1:{unused_port}"), scripted_registry()
    )
    async with running(orchestrator), channel_to(port) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        routing = await stub.DescribeRouting(orchestrator_pb2.DescribeRoutingRequest())
    assert [(m.name, m.pool_reachable) for m in routing.models] == [("scripted", False)]

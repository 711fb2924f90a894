"""vLLM backend on a GPU: streaming, cancellation and concurrent requests batched by the engine.

Skipped unless a CUDA GPU and the `vllm` extra are present; set LLM_MESH_TEST_VLLM_MODEL to the
Hugging Face id or local directory of a small chat model (default Qwen/Qwen2.5-0.5B-Instruct).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from services.common.registry import parse_registry
from services.inference.config import InferenceSettings
from services.inference.server import create_server
from tests.support.mesh import channel_to, running


def _gpu_missing() -> str | None:
    try:
        import torch
        import vllm  # noqa: F401
    except ImportError:
        return "needs the vllm extra (pip install 'llm-mesh[vllm]') and a CUDA GPU"
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (vLLM is installed but no GPU is visible)"
    return None


pytestmark = [
    pytest.mark.skipif(_gpu_missing() is not None, reason=_gpu_missing() or ""),
    pytest.mark.asyncio(loop_scope="module"),
]
MODEL = os.environ.get("LLM_MESH_TEST_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[inference_pb2_grpc.InferenceServiceStub]:
    registry = parse_registry(
        {
            "models": {
                "gpu": {
                    "backend": "vllm",
                    "model_id": MODEL,
                    "context_length": 4096,
                    "gpu_memory_utilization": 0.5,
                }
            }
        }
    )
    server, port = create_server(InferenceSettings(port=0), registry)
    async with running(server), channel_to(port) as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def chat(text: str, max_tokens: int = 32) -> inference_pb2.GenerateRequest:
    return inference_pb2.GenerateRequest(
        model="gpu",
        conversation=common_pb2.Conversation(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]
        ),
        params=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0),
    )


async def test_streams_deltas_that_add_up_to_the_result(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    events = [e async for e in stub.Generate(chat("Count from one to five."))]
    deltas = [e.delta for e in events if e.HasField("delta")]
    result = events[-1].result
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == result.text
    assert sum(d.tokens for d in deltas) == result.usage.completion_tokens <= 32


async def test_greedy_output_is_deterministic(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    first = [e async for e in stub.Generate(chat("Name a colour."))][-1].result.text
    second = [e async for e in stub.Generate(chat("Name a colour."))][-1].result.text
    assert first == second


async def test_concurrent_streams_are_batched_and_each_completes(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    async def one(index: int) -> common_pb2.GenerationResult:
        return [e async for e in stub.Generate(chat(f"Say the number {index}.", max_tokens=16))][-1].result

    results = await asyncio.gather(*(one(i) for i in range(16)))
    assert all(r.text and r.usage.completion_tokens <= 16 for r in results)


async def test_cancelling_a_stream_aborts_it(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    call = stub.Generate(chat("Write a long story about the sea.", max_tokens=2000))
    await call.read()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    result = [e async for e in stub.Generate(chat("Say hi.", max_tokens=4))][-1].result
    assert result.usage.completion_tokens <= 4, "the engine kept serving after the abort"

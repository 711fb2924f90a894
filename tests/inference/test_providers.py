"""Cloud backends through their official SDKs against a local fake of each provider's HTTP protocol.

The inference service hosts the four provider backends; the orchestrator in front of it retries and
falls back; both are real gRPC servers. Only the providers are fakes (tests/support/fake_providers.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.common.registry import Registry, parse_registry
from services.inference.config import InferenceSettings
from services.inference.server import create_server as create_inference
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.server import create_server as create_orchestrator
from tests.support.fake_providers import FakeProviders, reply_for, vector
from tests.support.mesh import channel_to, error_code, running, serve_asgi

TIMEOUT_S = 0.5
KEYS = {"OPENAI_API_KEY": "sk-openai-test", "ANTHROPIC_API_KEY": "sk-ant-test", "GEMINI_API_KEY": "gm-test"}
# provider -> the registry's model served by it
CHAT_MODELS = {"openai": "gpt", "anthropic": "claude", "gemini": "gemini", "bedrock": "nova"}


def registry(url: str) -> Registry:
    common = {"timeout_s": TIMEOUT_S}
    bedrock = {"backend": "bedrock", "base_url": url, "region": "us-east-1", **common}
    return parse_registry(
        {
            "models": {
                "gpt": {"backend": "openai", "model_id": "gpt-test", "base_url": f"{url}/v1", **common},
                "claude": {"backend": "anthropic", "model_id": "claude-test", "base_url": url, **common},
                "gemini": {"backend": "gemini", "model_id": "gemini-test", "base_url": url, **common},
                "nova": {"model_id": "amazon.nova-lite-v1:0", **bedrock},
                "gpt-embed": {
                    "backend": "openai",
                    "model_id": "emb",
                    "base_url": f"{url}/v1",
                    "task": "embed",
                },
                "gemini-embed": {"backend": "gemini", "model_id": "emb", "base_url": url, "task": "embed"},
                "titan-embed": {"model_id": "amazon.titan-embed-text-v2:0", "task": "embed", **bedrock},
            }
        }
    )


@dataclass
class Providers:
    fake: FakeProviders
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub


@pytest.fixture
async def providers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Providers]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    fake = FakeProviders()
    async for url in serve_asgi(fake.app(), lifespan="off"):
        models = registry(url)
        inference, inference_port = create_inference(InferenceSettings(port=0), models)
        orchestrator, port = create_orchestrator(
            OrchestratorSettings(
                port=0,
                inference_addr=f"127.0.0.1:{inference_port}",
                retry_backoff_s=0.01,
                generation_timeout_s=10,
            ),
            models,
        )
        async with running(inference), running(orchestrator), channel_to(port) as channel:
            yield Providers(fake, orchestrator_pb2_grpc.OrchestratorServiceStub(channel))


def spec(model: str, prompt: str = "hello there") -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(
        model=model, system="be brief", prompt=prompt, params=common_pb2.SamplingParams(max_tokens=32)
    )


async def run(providers: Providers, model: str) -> common_pb2.GenerationResult:
    response = await providers.stub.RunGeneration(orchestrator_pb2.RunGenerationRequest(spec=spec(model)))
    return response.result


by_provider = pytest.mark.parametrize("provider", list(CHAT_MODELS))


def sent_key(provider: str, headers: dict[str, str]) -> str:
    """The credential each SDK put on the wire."""
    return {
        "openai": headers.get("authorization", ""),
        "anthropic": headers.get("x-api-key", "") + headers.get("authorization", ""),
        "gemini": headers.get("x-goog-api-key", ""),
        "bedrock": headers.get("authorization", ""),
    }[provider]


@by_provider
async def test_normal_reply_uses_the_one_shot_api(providers: Providers, provider: str) -> None:
    result = await run(providers, CHAT_MODELS[provider])
    assert result.text == reply_for(provider, "hello there")
    assert result.model == CHAT_MODELS[provider]
    assert result.finish_reason == common_pb2.FINISH_REASON_STOP
    assert result.usage.completion_tokens == 4
    assert result.usage.prompt_tokens > 0
    (call,) = providers.fake.calls(provider)
    assert not call.body.get("stream")
    assert not call.path.endswith(("streamGenerateContent", "converse-stream"))
    assert {
        "openai": "sk-openai-test",
        "anthropic": "sk-ant-test",
        "gemini": "gm-test",
        "bedrock": "AKIATESTTESTTEST",
    }[provider] in sent_key(provider, call.headers)


@by_provider
async def test_streamed_reply_arrives_in_pieces(providers: Providers, provider: str) -> None:
    call = providers.stub.StreamGeneration(
        orchestrator_pb2.StreamGenerationRequest(spec=spec(CHAT_MODELS[provider]))
    )
    events = [event async for event in call]
    deltas = [e.delta.text for e in events if e.HasField("delta")]
    result = events[-1].result
    assert len(deltas) == 4
    assert "".join(deltas) == result.text == reply_for(provider, "hello there")
    assert result.usage.completion_tokens == 4
    (recorded,) = providers.fake.calls(provider)
    assert recorded.body.get("stream") or recorded.path.endswith(("streamGenerateContent", "converse-stream"))


@by_provider
async def test_the_system_prompt_goes_where_the_provider_wants_it(
    providers: Providers, provider: str
) -> None:
    await run(providers, CHAT_MODELS[provider])
    (call,) = providers.fake.calls(provider)
    if provider == "openai":
        assert call.body["messages"][0] == {"role": "system", "content": "be brief"}
    elif provider == "anthropic":
        assert call.body["system"] == "be brief"
        assert [m["role"] for m in call.body["messages"]] == ["user"]
    elif provider == "gemini":
        assert call.body["systemInstruction"]["parts"][0]["text"] == "be brief"
    else:
        assert call.body["system"] == [{"text": "be brief"}]


@by_provider
async def test_throttling_is_retried_then_succeeds(providers: Providers, provider: str) -> None:
    providers.fake.then("throttle", "down")
    result = await run(providers, CHAT_MODELS[provider])
    assert result.text == reply_for(provider, "hello there")
    assert len(providers.fake.calls(provider)) == 3


@by_provider
async def test_a_refused_key_is_permanent_and_not_retried(providers: Providers, provider: str) -> None:
    providers.fake.then("auth")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(providers, CHAT_MODELS[provider])
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert error_code(caught.value) == "upstream_auth_failed"
    assert (
        caught.value.details() == f"{provider} (model {CHAT_MODELS[provider]}) refused the mesh's credentials"
    )
    assert len(providers.fake.calls(provider)) == 1


@by_provider
async def test_an_empty_response_is_retried_once(providers: Providers, provider: str) -> None:
    providers.fake.then("empty")
    result = await run(providers, CHAT_MODELS[provider])
    assert result.text == reply_for(provider, "hello there")
    assert len(providers.fake.calls(provider)) == 2


@by_provider
async def test_empty_twice_is_an_upstream_error(providers: Providers, provider: str) -> None:
    providers.fake.then("empty", "empty")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(providers, CHAT_MODELS[provider])
    assert error_code(caught.value) == "upstream_empty_response"
    assert len(providers.fake.calls(provider)) == 2


@by_provider
async def test_a_provider_timeout_is_retried_then_reported(providers: Providers, provider: str) -> None:
    providers.fake.then("slow", "slow", "slow")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(providers, CHAT_MODELS[provider])
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_code(caught.value) == "upstream_timeout"
    assert len(providers.fake.calls(provider)) == 3


@by_provider
async def test_a_prompt_too_long_is_the_clients_error(providers: Providers, provider: str) -> None:
    providers.fake.then("context")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(providers, CHAT_MODELS[provider])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(caught.value) == "prompt_too_long"
    assert len(providers.fake.calls(provider)) == 1


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "gpt-embed"), ("gemini", "gemini-embed"), ("bedrock", "titan-embed")]
)
async def test_embeddings(providers: Providers, provider: str, model: str) -> None:
    texts = ["first text", "a second, longer text"]
    response = await providers.stub.CreateEmbeddings(
        orchestrator_pb2.CreateEmbeddingsRequest(model=model, inputs=texts)
    )
    assert [list(e.values) for e in response.embeddings] == [vector(t) for t in texts]
    assert response.model == model


async def test_embeddings_from_a_chat_model_are_refused(providers: Providers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await providers.stub.CreateEmbeddings(
            orchestrator_pb2.CreateEmbeddingsRequest(model="gpt", inputs=["x"])
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(caught.value) == "unsupported_task"

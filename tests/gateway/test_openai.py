"""The OpenAI-compatible API, driven by the official `openai` SDK (sync and async, streamed and not)
and by raw HTTP for the SSE framing, against the whole mesh (scripted models) on real sockets."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import logging
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from services.common.registry import CustomConfig, parse_registry
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.openai import tokens
from tests.support.fakes import ScriptedBackend, ScriptedEmbedder
from tests.support.logs import errors_once_cancelled
from tests.support.mesh import Gateway, eventually, scripted_mesh
from tests.support.openai_schema import conforms

FAKE = "tests.support.fakes:ScriptedBackend"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    registry = parse_registry(
        {
            "models": {
                "scripted": {"backend": FAKE},
                "embedder": {"backend": "tests.support.fakes:ScriptedEmbedder", "task": "embed"},
            },
            "canned": {"greetings": [{"match": "^hello$", "reply": "Hi there!"}]},
            "routes": {"default": [{"canned": "greetings"}, {"model": "scripted"}]},
        }
    )
    embedder = ScriptedEmbedder(
        "embedder", CustomConfig(backend="tests.support.fakes:ScriptedEmbedder", task="embed")
    )
    backends = [ScriptedBackend(), embedder]
    async with scripted_mesh(
        f"sqlite+aiosqlite:///{tmp_path}/s.db", registry=registry, backends=backends
    ) as mesh:
        yield mesh


def base_url(gateway: Gateway) -> str:
    return f"{gateway.client.base_url}/v1"


def async_client(gateway: Gateway, **options: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url(gateway), api_key="unused-when-auth-is-off", max_retries=0, **options
    )


async def test_sync_sdk_chat_completion(gateway: Gateway) -> None:
    def call() -> openai.types.chat.ChatCompletion:
        client = openai.OpenAI(base_url=base_url(gateway), api_key="unused", max_retries=0)
        with client:
            return client.chat.completions.create(
                model="scripted",
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "first question"},
                    {"role": "assistant", "content": "first answer"},
                    {"role": "user", "content": "second question"},
                ],
                max_tokens=20,
                temperature=0,
                top_p=0.5,
                seed=7,
                stop=["END"],
            )

    completion = await asyncio.to_thread(call)  # the mesh runs on this loop; the sync SDK blocks
    assert completion.object == "chat.completion"
    assert completion.model == "scripted"
    assert completion.id.startswith("chatcmpl-")
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: second question"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 3)
    assert completion.usage.total_tokens == 5
    # Every turn and every sampling field reached the model.
    request = gateway.backend.calls[-1].request
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    sampling = request.sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.seed, sampling.stop) == (
        20,
        0.0,
        0.5,
        7,
        ("END",),
    )


async def test_async_sdk_chat_completion_with_max_completion_tokens(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        completion = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "developer", "content": "Rules."}, {"role": "user", "content": "slow 3"}],
            max_completion_tokens=3,
        )
    assert completion.choices[0].message.content == "t0 t1 t2 "
    assert completion.choices[0].finish_reason == "length"
    request = gateway.backend.calls[-1].request
    assert request.messages[0].role == "system"
    assert request.sampling.max_tokens == 3


async def test_async_sdk_streams_chunks_with_usage(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "tell me more"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: tell me more"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)


async def test_sdk_leaving_a_stream_logs_no_error_in_any_service(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The client closes the stream after its first text: the model's many fast deltas are still being
    relayed, and every service ends its stream as cancelled, with nothing logged as an error."""
    caplog.set_level(logging.INFO)
    words = " ".join(["word"] * 5000)
    async with async_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": words}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                assert chunk.choices[0].delta.content == "echo: "
                break
        await stream.close()
    assert await errors_once_cancelled(caplog) == []


async def test_sync_sdk_streams(gateway: Gateway) -> None:
    def call() -> list[str]:
        with openai.OpenAI(base_url=base_url(gateway), api_key="unused", max_retries=0) as client:
            stream = client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
            return [c.choices[0].delta.content or "" for c in stream if c.choices]

    pieces = await asyncio.to_thread(call)
    assert "".join(pieces) == "echo: a b c"
    assert len([p for p in pieces if p]) == 4  # one chunk per delta the model produced


async def test_raw_sse_framing(gateway: Gateway) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "x y"}], "stream": True}
    async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join([part async for part in response.aiter_text()])
    frames = [f for f in raw.split("\n\n") if f and not f.startswith(":")]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames), frames
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "echo: ", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert "usage" not in chunks[-1]  # only with stream_options.include_usage
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: x y"


async def test_stream_failing_midway_sends_an_openai_error_then_done(gateway: Gateway) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "fail midway"}], "stream": True}
    async with gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        raw = "".join([part async for part in response.aiter_text()])
    frames = [f.removeprefix("data: ") for f in raw.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])["error"]
    assert error["code"] == "upstream_error" and error["type"] == "server_error"
    assert error["request_id"] == response.headers["x-request-id"]
    async with async_client(gateway) as client:
        stream = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "fail midway"}], stream=True
        )
        with pytest.raises(openai.APIError, match="failed"):
            async for _ in stream:
                pass


async def test_route_names_and_canned_replies_work_as_models(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        canned = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hello"}]
        )
        modelled = await client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "hello there"}]
        )
    assert canned.choices[0].message.content == "Hi there!"
    assert modelled.choices[0].message.content == "echo: hello there"


async def test_completions_send_the_prompt_without_a_chat_template(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        completion = await client.completions.create(model="scripted", prompt="Once upon", max_tokens=5)
        stream = await client.completions.create(model="scripted", prompt=["in a land"], stream=True)
        pieces = [c.choices[0].text async for c in stream if c.choices]
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "echo: Once upon"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 5
    assert "".join(pieces) == "echo: in a land"
    raw = gateway.backend.calls[-2].request
    assert (raw.prompt, list(raw.messages), raw.sampling.max_tokens) == ("Once upon", [], 5)


async def test_embeddings_as_floats_and_base64(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        # The SDK asks for base64 by default and decodes it.
        decoded = await client.embeddings.create(model="embedder", input=["alpha beta", "gamma"])
        floats = await client.embeddings.create(model="embedder", input="alpha beta", encoding_format="float")
    assert [d.index for d in decoded.data] == [0, 1]
    assert decoded.usage.prompt_tokens == 3
    assert decoded.data[0].embedding == pytest.approx(floats.data[0].embedding, abs=1e-6)
    assert decoded.data[0].embedding != decoded.data[1].embedding
    assert sum(v * v for v in floats.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    raw = await gateway.client.post(
        "/v1/embeddings", json={"model": "embedder", "input": "gamma", "encoding_format": "base64"}
    )
    packed = base64.b64decode(raw.json()["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == pytest.approx(decoded.data[1].embedding)


async def test_embeddings_of_token_arrays_are_the_embeddings_of_the_text_they_encode(
    gateway: Gateway,
) -> None:
    """What LangChain's OpenAIEmbeddings sends by default: cl100k_base tokens (tiktoken's), not text."""
    hello_world, konnichiwa = [15339, 1917], [69847, 20230, 43514, 15682]  # "hello world", "こんにちは"
    async with async_client(gateway) as client:
        texts = await client.embeddings.create(model="embedder", input=["hello world", "こんにちは"])
        one = await client.embeddings.create(model="embedder", input=hello_world)
        many = await client.embeddings.create(model="embedder", input=[hello_world, konnichiwa])
    assert one.data[0].embedding == pytest.approx(texts.data[0].embedding)
    assert [d.embedding for d in many.data] == [pytest.approx(d.embedding) for d in texts.data]
    refused = await gateway.client.post(
        "/v1/embeddings", json={"model": "embedder", "input": [15339, 100257]}
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "input")
    assert "token 100257 is cl100k_base's special token <|endoftext|>" in error["message"]
    unknown = await gateway.client.post(
        "/v1/embeddings", json={"model": "embedder", "input": [[1], [999999]]}
    )
    assert unknown.status_code == 400
    assert "token 999999 is not in cl100k_base's vocabulary" in unknown.json()["error"]["message"]


def test_the_vendored_vocabulary_is_tiktokens_cl100k_base() -> None:
    """The file tiktoken itself checks cl100k_base.tiktoken against (tiktoken_ext/openai_public.py)."""
    raw = gzip.decompress(tokens.VOCABULARY.read_bytes())
    assert (
        hashlib.sha256(raw).hexdigest() == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    )


async def test_every_answer_conforms_to_openais_schema(gateway: Gateway) -> None:
    """Raw JSON of every endpoint, streamed and not, checked against OpenAI's published OpenAPI schemas."""
    chat = {"model": "scripted", "messages": [{"role": "user", "content": "x y"}]}
    plain = await gateway.client.post("/v1/chat/completions", json=chat)
    assert plain.status_code == 200
    conforms("CreateChatCompletionResponse", plain.json())
    assert plain.json()["choices"][0]["message"]["refusal"] is None
    for options in ({}, {"stream_options": {"include_usage": True}}):
        for chunk in await _chunks(gateway, "/v1/chat/completions", {**chat, "stream": True, **options}):
            conforms("CreateChatCompletionStreamResponse", chunk)
    text = {"model": "scripted", "prompt": "Once upon", "max_tokens": 4}
    completion = await gateway.client.post("/v1/completions", json=text)
    conforms("CreateCompletionResponse", completion.json())
    for chunk in await _chunks(gateway, "/v1/completions", {**text, "stream": True}):
        # OpenAI streams text completions as CreateCompletionResponse objects, finish_reason null until the end.
        conforms("CreateCompletionResponse", {**chunk, "choices": [
            {**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]})  # fmt: skip
    embeddings = await gateway.client.post("/v1/embeddings", json={"model": "embedder", "input": ["a", "b"]})
    conforms("CreateEmbeddingResponse", embeddings.json())
    models = await gateway.client.get("/v1/models")
    conforms("ListModelsResponse", models.json())
    conforms("Model", (await gateway.client.get("/v1/models/scripted")).json())
    missing = await gateway.client.get("/v1/models/nope")
    assert missing.status_code == 404
    conforms("ErrorResponse", missing.json())


async def _chunks(gateway: Gateway, path: str, body: dict) -> list[dict]:
    async with gateway.client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        raw = "".join([part async for part in response.aiter_text()])
    frames = [f.removeprefix("data: ") for f in raw.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]" and len(frames) > 2
    return [json.loads(f) for f in frames[:-1]]


async def test_models_lists_models_and_routes(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        listed = await client.models.list()
        one = await client.models.retrieve("scripted")
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("nope")
    assert {(m.id, m.owned_by) for m in listed.data} == {
        ("scripted", "llm-mesh"),
        ("embedder", "llm-mesh"),
        ("default", "llm-mesh:route"),
    }
    assert one.id == "scripted"
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "code", "param", "message"),
    [
        ({"messages": []}, "invalid_request", "messages", "messages: List should have at least 1 item"),
        ({"messages": HI, "n": 2}, "invalid_request", "n", "n greater than 1 is not supported"),
        (
            {"messages": HI, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools_not_supported",
            "tools",
            "model scripted",
        ),
        (
            {"messages": HI, "functions": [{"name": "f"}]},
            "invalid_request",
            "functions",
            "functions is not supported by this server",
        ),
        (
            {"messages": HI, "response_format": {"type": "json_object"}},
            "unsupported_output_control",
            None,
            "model scripted (scripted) cannot constrain its output to json object",
        ),
        (
            {"messages": HI, "logprobs": True},
            "unsupported_output_control",
            None,
            "model scripted (scripted) does not report logprobs",
        ),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            "invalid_generation_request",
            None,
            "must end with a user message",
        ),
        ({"messages": HI, "max_tokens": 0}, "invalid_request", "max_tokens", "max_tokens: Input should be"),
        # Types are strict, as OpenAI's API: a boolean or a string is not a number.
        (
            {"messages": HI, "max_tokens": True},
            "invalid_request",
            "max_tokens",
            "max_tokens: Input should be a valid integer",
        ),
        (
            {"messages": HI, "max_tokens": "8"},
            "invalid_request",
            "max_tokens",
            "max_tokens: Input should be a valid integer",
        ),
        (
            {"messages": HI, "stream": "yes"},
            "invalid_request",
            "stream",
            "stream: Input should be a valid boolean",
        ),
        # In JSON's words, not pydantic's: no union members' type names, no model class names.
        (
            {"messages": [{"role": "user", "content": 5}]},
            "invalid_request",
            "messages.0.content",
            "messages.0.content: Input should be a valid string or a valid list",
        ),
        ({"messages": ["hi"]}, "invalid_request", "messages.0", "messages.0: Input should be an object"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "invalid_request",
            "messages.0.content.0.text",
            "messages.0.content.0.text: Field required",
        ),
    ],
)
async def test_bad_requests_get_openai_shaped_400s_naming_the_field(
    gateway: Gateway, body: dict, code: str, param: str | None, message: str
) -> None:
    response = await gateway.client.post("/v1/chat/completions", json={"model": "scripted", **body})
    assert response.status_code == 400, response.text
    conforms("ErrorResponse", response.json())
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert message in error["message"], error["message"]
    for pydantic_word in ("list[", "str]", "TextPart", "ChatMessage", "function-", "Value error"):
        assert pydantic_word not in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert gateway.backend.calls == []


async def test_tools_with_tool_choice_none_are_answered_in_text(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        completion = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "what is the weather"}],
            tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            tool_choice="none",
        )
    assert completion.choices[0].message.content == "echo: what is the weather"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


async def test_sdk_raises_typed_errors(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="scripted", input="not an embedder")
    assert unknown.value.status_code == 404
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]


async def test_an_endpoint_this_server_lacks_is_a_404_naming_it(gateway: Gateway) -> None:
    """OpenAI clients calling an API the mesh does not serve learn which one, in OpenAI's shape."""
    async with async_client(gateway) as client:
        with pytest.raises(openai.NotFoundError) as unsupported:
            await client.post("/audio/speech", body={"model": "tts-1", "input": "hi"}, cast_to=httpx.Response)
        with pytest.raises(openai.NotFoundError) as listed:
            await client.get("/assistants", cast_to=httpx.Response)
    assert unsupported.value.status_code == 404
    assert unsupported.value.body == {  # the SDK keeps the body's `error` object
        "message": "POST /v1/audio/speech is not supported by this server",
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported_endpoint",
        "request_id": unsupported.value.response.headers["x-request-id"],
    }
    assert unsupported.value.code == "unsupported_endpoint"
    assert listed.value.body["message"] == "GET /v1/assistants is not supported by this server"  # type: ignore[index]
    long = await gateway.client.post(f"/v1/{'x' * 500}", json={})
    assert long.status_code == 404 and long.json()["error"]["code"] == "unsupported_endpoint"
    assert len(long.json()["error"]["message"]) < 150  # a caller's long path is not echoed whole
    # Served routes keep their own answers: a wrong method is 405, an unknown model is the model's 404.
    wrong_method = await gateway.client.get("/v1/chat/completions")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    missing_model = await gateway.client.get("/v1/models/nope")
    assert missing_model.json()["error"]["code"] == "model_not_found"
    # Outside /v1 an unknown path is still our own 404.
    ours = await gateway.client.get("/api/v1/nothing-here")
    assert (ours.status_code, ours.json()["error"]["code"]) == (404, "route_not_found")


async def test_a_route_added_after_the_app_is_built_is_served_not_refused() -> None:
    """The unsupported-endpoint answer is for paths no route serves, so a door added later (an API
    under /v1 of its own) is never shadowed by it."""
    app = create_app(GatewaySettings())

    async def late() -> dict[str, bool]:
        return {"served": True}

    app.add_api_route("/v1/late", late, methods=["POST"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        served = await client.post("/v1/late")
        other = await client.post("/v1/later")
    assert (served.status_code, served.json()) == (200, {"served": True})
    assert (other.status_code, other.json()["error"]["code"]) == (404, "unsupported_endpoint")


async def test_conversation_keeps_history_so_clients_send_only_the_new_turn(gateway: Gateway) -> None:
    async with async_client(gateway) as client:
        first = await client.chat.completions.create(
            model="scripted",
            messages=[
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "my name is Ada"},
            ],
            extra_body={"conversation_id": "chat-1"},
        )
        second = await client.chat.completions.create(
            model="scripted",
            messages=[{"role": "user", "content": "what is my name"}],
            extra_headers={"X-Conversation-ID": "chat-1"},
            stream=True,
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in second if c.choices])
    assert first.choices[0].message.content == "echo: my name is Ada"
    assert streamed == "echo: what is my name"
    seen = gateway.backend.calls[-1].request.messages
    assert [(m.role, m.content) for m in seen] == [
        ("user", "my name is Ada"),  # the system message of the first request is not kept
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name"),
    ]
    stored = await gateway.client.get("/api/v1/conversations/chat-1")
    assert stored.status_code == 200
    assert [m["content"] for m in stored.json()["messages"]] == [
        "my name is Ada",
        "echo: my name is Ada",
        "what is my name",
        "echo: what is my name",
    ]
    # A failed turn leaves no trace; deleting forgets the conversation.
    failed = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "model": "scripted",
            "messages": [{"role": "user", "content": "PROVIDER-DOWN"}],
            "conversation_id": "chat-1",
        },
    )
    assert failed.status_code == 502
    assert len((await gateway.client.get("/api/v1/conversations/chat-1")).json()["messages"]) == 4
    assert (await gateway.client.delete("/api/v1/conversations/chat-1")).status_code == 204
    gone = await gateway.client.get("/api/v1/conversations/chat-1")
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "conversation_not_found")


async def test_bad_conversation_id_header_is_400(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/chat/completions",
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Conversation-ID": "has spaces"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_conversation_id"


async def test_prompt_over_the_models_limit_is_400_naming_the_limit(tmp_path: Path) -> None:
    limited = ScriptedBackend(config=CustomConfig(backend=FAKE, max_prompt_tokens=5))
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", backends=[limited]) as mesh:
        ok = await mesh.client.post(
            "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "a b c d e"}]},
        )
        over = await mesh.client.post(
            "/v1/chat/completions",
            json={"model": "scripted", "messages": [{"role": "user", "content": "a b c d e f"}]},
        )
        ours = await mesh.client.post("/api/v1/ai/generate", json={"prompt": "a b c d e f"})
    assert ok.status_code == 200
    assert over.status_code == 400
    error = over.json()["error"]
    assert error["code"] == "prompt_too_long"
    assert "6 tokens" in error["message"] and "at most 5 prompt tokens" in error["message"]
    assert (ours.status_code, ours.json()["error"]["code"]) == (400, "prompt_too_long")


async def test_sdk_timeout_and_client_disconnect_cancel_the_model(tmp_path: Path) -> None:
    # The mesh's own deadline is far off, so only the client's leaving can stop the model; the SDK
    # waits long enough (3 s, one attempt) for the call to reach the model even on a busy machine.
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=30) as mesh:
        async with async_client(mesh, timeout=httpx.Timeout(3.0)) as client:
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(
                    model="scripted", messages=[{"role": "user", "content": "stall"}]
                )
        await eventually(lambda: bool(mesh.backend.calls) and mesh.backend.calls[-1].cancelled)
        assert mesh.backend.calls[-1].cancelled


async def test_a_nul_character_in_a_stored_conversation_is_refused_before_the_model_runs(
    gateway: Gateway,
) -> None:
    """PostgreSQL cannot store it: refused at once (on every database), not after the model generated."""
    response = await gateway.client.post(
        "/v1/chat/completions",
        json={
            "model": "scripted",
            "messages": [{"role": "user", "content": "a\x00b"}],
            "conversation_id": "chat-nul",
        },
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_generation_request" and "NUL" in error["message"]
    assert gateway.backend.calls == []
    assert (await gateway.client.get("/api/v1/conversations/chat-nul")).status_code == 404

"""The Anthropic Messages API, driven by the official `anthropic` SDK (and by raw HTTP for the SSE
framing), against one mesh for the whole module: the real Gemma 3 270M model, greedy and short, beside
a scripted model for the failures a real model cannot be asked for. Auth is on: the SDK sends the
mesh's API key as `x-api-key`, as it sends Anthropic's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.support.auth import ADMIN_TOKEN, create_key
from tests.support.http import sse_events
from tests.support.mesh import GEMMA, Gateway, gemma_mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
STREAM_ORDER = ["message_start", "content_block_start", "ping"]
STREAM_END = ["content_block_stop", "message_delta", "message_stop"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    database = tmp_path_factory.mktemp("anthropic") / "s.db"
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with gemma_mesh(
        f"sqlite+aiosqlite:///{database}", model_path, gateway_settings=settings
    ) as gateway:
        yield gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def key(mesh: Gateway) -> str:
    return await create_key(mesh)


def sdk(mesh: Gateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=str(mesh.client.base_url), api_key=key, max_retries=0)


def headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


async def test_create_message_with_system_blocks_and_turns(mesh: Gateway, key: str) -> None:
    turns: list[Any] = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello Ada."}]},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]
    async with sdk(mesh, key) as client:
        message = await client.messages.create(
            model=GEMMA,
            system=[{"type": "text", "text": "Answer in one short sentence."}],
            messages=turns,
            max_tokens=16,
            metadata={"user_id": "user-1"},  # accepted and ignored
            # The SDK's create() no longer names the sampling fields; the API still takes them.
            # top_k is accepted and ignored: the mesh has no top-k sampling.
            extra_body={"temperature": 0, "top_k": 5},
        )
    async with openai.AsyncOpenAI(base_url=f"{mesh.client.base_url}/v1", api_key=key, max_retries=0) as other:
        same = await other.chat.completions.create(
            model=GEMMA,
            messages=[
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada."},
                {"role": "user", "content": "What is my name?"},
            ],
            max_tokens=16,
            temperature=0,
        )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == GEMMA
    [block] = message.content
    assert block.type == "text" and block.text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert 0 < message.usage.output_tokens <= 16
    # The same orchestrator path as the OpenAI door: the same greedy text and prompt tokens.
    assert block.text == same.choices[0].message.content
    assert same.usage is not None and message.usage.input_tokens == same.usage.prompt_tokens


async def test_max_tokens_and_stop_sequences_set_the_stop_reason(mesh: Gateway, key: str) -> None:
    async with sdk(mesh, key) as client:
        whole = await client.messages.create(model=GEMMA, messages=QUESTION, max_tokens=24, extra_body=GREEDY)
        cut = await client.messages.create(model=GEMMA, messages=QUESTION, max_tokens=3, extra_body=GREEDY)
        text = whole.content[0].text  # type: ignore[union-attr]
        # A stop string taken from the middle of the greedy answer: the same answer stops before it.
        stop = text.split()[len(text.split()) // 2]
        stopped = await client.messages.create(
            model=GEMMA, messages=QUESTION, max_tokens=24, extra_body=GREEDY, stop_sequences=["@@@", stop]
        )
    assert (cut.stop_reason, cut.usage.output_tokens) == ("max_tokens", 3)
    assert text.startswith(cut.content[0].text)  # type: ignore[union-attr]
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", stop)
    assert stopped.content[0].text == text[: text.index(stop)]  # type: ignore[union-attr]


async def test_streamed_text_deltas_make_the_final_message(mesh: Gateway, key: str) -> None:
    async with sdk(mesh, key) as client:
        whole = await client.messages.create(model=GEMMA, messages=QUESTION, max_tokens=20, extra_body=GREEDY)
        async with client.messages.stream(
            model=GEMMA, messages=QUESTION, max_tokens=20, extra_body=GREEDY
        ) as stream:
            pieces = [piece async for piece in stream.text_stream]
            final = await stream.get_final_message()
    assert len(pieces) > 1, "text arrives in pieces as it is generated, not in one lump"
    assert "".join(pieces) == final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == whole.stop_reason
    # The prompt's tokens arrive with message_delta, and the SDK takes them from there.
    assert final.usage.input_tokens == whole.usage.input_tokens > 0
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_count_tokens_is_what_the_generation_reads(mesh: Gateway, key: str) -> None:
    system = "You are terse."
    async with sdk(mesh, key) as client:
        counted = await client.messages.count_tokens(model=GEMMA, system=system, messages=QUESTION)
        without_system = await client.messages.count_tokens(model="default", messages=QUESTION)
        generated = await client.messages.create(
            model=GEMMA, system=system, messages=QUESTION, max_tokens=2, extra_body=GREEDY
        )
    assert counted.input_tokens == generated.usage.input_tokens
    # The default route counts on its first model (Gemma); the system prompt's tokens are counted.
    assert 0 < without_system.input_tokens < counted.input_tokens


async def test_canned_replies_of_a_route(mesh: Gateway, key: str) -> None:
    async with sdk(mesh, key) as client:
        message = await client.messages.create(
            model="default", messages=[{"role": "user", "content": "hello"}], max_tokens=8
        )
    assert (message.content[0].text, message.stop_reason) == ("Hi there!", "end_turn")  # type: ignore[union-attr]


async def test_sdk_raises_typed_errors(mesh: Gateway, key: str) -> None:
    async with sdk(mesh, key) as client:
        with pytest.raises(anthropic.NotFoundError) as unknown:
            await client.messages.create(model="nope", messages=QUESTION, max_tokens=4)
        with pytest.raises(anthropic.BadRequestError) as no_limit:
            await client.messages.create(
                model=GEMMA, messages=QUESTION, max_tokens=anthropic.NOT_GIVEN, timeout=30
            )  # type: ignore[call-overload]
        with pytest.raises(anthropic.BadRequestError) as tools:
            await client.messages.create(
                model="scripted",
                messages=QUESTION,
                max_tokens=4,
                tools=[{"name": "weather", "input_schema": {"type": "object"}}],
            )
        with pytest.raises(anthropic.BadRequestError) as image:
            await client.messages.create(
                model=GEMMA,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                            }
                        ],
                    }
                ],
                max_tokens=4,
            )
    async with anthropic.AsyncAnthropic(
        base_url=str(mesh.client.base_url), api_key="lmk_0123456789ab_" + "x" * 43, max_retries=0
    ) as stranger:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await stranger.messages.create(model=GEMMA, messages=QUESTION, max_tokens=4)
    assert unknown.value.status_code == 404
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert unknown.value.body["error"]["code"] == "model_not_found"  # type: ignore[index]
    assert "max_tokens" in no_limit.value.message
    assert no_limit.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    # A model that cannot call tools (the local one can: see test_local_tools.py)
    assert "model scripted" in tools.value.message and "cannot call tools" in tools.value.message
    assert "'image' are not supported" in image.value.message
    assert refused.value.status_code == 401
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_errors_are_anthropic_shaped_with_the_request_id(mesh: Gateway, key: str) -> None:
    missing = await mesh.client.post(
        "/v1/messages", json={"model": GEMMA, "messages": QUESTION}, headers=headers(key)
    )
    assert missing.status_code == 400
    body = missing.json()
    assert body["type"] == "error" and body["request_id"] == missing.headers["x-request-id"]
    assert body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"]
    no_key = await mesh.client.post("/v1/messages/count_tokens", json={"model": GEMMA, "messages": QUESTION})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    # Authorization: Bearer works here too (it is tried first).
    bearer = await mesh.client.post(
        "/v1/messages/count_tokens",
        json={"model": GEMMA, "messages": QUESTION},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert bearer.status_code == 200 and bearer.json()["input_tokens"] > 0


async def test_raw_sse_framing_follows_anthropics_event_order(mesh: Gateway, key: str) -> None:
    body = {"model": GEMMA, "messages": QUESTION, "max_tokens": 8, "temperature": 0, "stream": True}
    async with mesh.client.stream("POST", "/v1/messages", json=body, headers=headers(key)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join([part async for part in response.aiter_text()])
    assert "\r" not in raw
    events = sse_events(raw)
    names = [name for name, _ in events]
    deltas = names[len(STREAM_ORDER) : -len(STREAM_END)]
    assert names[: len(STREAM_ORDER)] == STREAM_ORDER and names[-len(STREAM_END) :] == STREAM_END
    assert deltas and set(deltas) == {"content_block_delta"}
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (start["role"], start["content"], start["stop_reason"]) == ("assistant", [], None)
    assert start["id"] == f"msg_{response.headers['x-request-id']}"
    assert all(
        data["delta"]["type"] == "text_delta" for name, data in events if name == "content_block_delta"
    )
    finish = events[-2][1]
    assert finish["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert finish["usage"]["output_tokens"] == 8 and finish["usage"]["input_tokens"] > 0


async def test_a_failure_midway_ends_the_stream_with_an_error_event(mesh: Gateway, key: str) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "fail midway"}], "max_tokens": 8}
    async with mesh.client.stream(
        "POST", "/v1/messages", json={**body, "stream": True}, headers=headers(key)
    ) as response:
        assert response.status_code == 200
        events = sse_events("".join([part async for part in response.aiter_text()]))
    names = [name for name, _ in events]
    assert names == [*STREAM_ORDER, "content_block_delta", "content_block_delta", "error"]
    error = events[-1][1]
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert error["request_id"] == response.headers["x-request-id"]
    async with sdk(mesh, key) as client:
        with pytest.raises(anthropic.APIStatusError, match="api_error"):
            async with client.messages.stream(
                model="scripted", messages=[{"role": "user", "content": "fail midway"}], max_tokens=8
            ) as stream:
                async for _ in stream.text_stream:
                    pass

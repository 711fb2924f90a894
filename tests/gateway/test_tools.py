"""Tool calls end to end: the official `openai` and `anthropic` SDKs and the `ollama` client against the whole mesh, whose
cloud backends (OpenAI-compatible, Anthropic, Gemini, Bedrock) call local fakes of their providers
through their own SDKs. A call, the tool's result sent back, the final answer; streamed and not; tool_choice; a route
that passes over a model that cannot call tools; the refusals. Answers are checked against OpenAI's
published schemas."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest

from tests.support.fake_providers import FakeProviders
from tests.support.mesh import PROVIDER_ENV, Gateway, provider_mesh
from tests.support.openai_schema import conforms

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}},
}
ASK = [{"role": "user", "content": "Tokyo"}]
# provider -> the registry's model served by it
MODELS = {"openai": "gpt", "anthropic": "claude", "gemini": "gemini", "bedrock": "nova"}
PARAMETERS = WEATHER["function"]["parameters"]  # type: ignore[index]


@dataclass
class ToolMesh:
    gateway: Gateway
    fake: FakeProviders

    def sdk(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{self.gateway.client.base_url}/v1", api_key="unused", max_retries=0
        )


@pytest.fixture(autouse=True)
def provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROVIDER_ENV.items():
        monkeypatch.setenv(name, value)


@asynccontextmanager
async def tool_mesh(database_url: str) -> AsyncIterator[ToolMesh]:
    async with provider_mesh(
        database_url,
        canned={"greetings": [{"match": "Tokyo", "reply": "Canned Tokyo."}]},
        routes={
            "default": [{"model": "scripted"}],
            # canned, then a model that cannot call tools, then one that can
            "tooled": [{"canned": "greetings"}, {"model": "scripted"}, {"model": "gpt"}],
        },
    ) as (gateway, fake):
        yield ToolMesh(gateway, fake)


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[ToolMesh]:
    async with tool_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db") as mesh:
        yield mesh


def tool_turns(call: Any, result: str) -> list[dict[str, Any]]:
    """The conversation after a call: the assistant's call as the SDK returned it, then the tool's result."""
    return [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]


@pytest.mark.parametrize("provider", MODELS)
async def test_a_tool_round_trip(mesh: ToolMesh, provider: str) -> None:
    async with mesh.sdk() as client:
        called = await client.chat.completions.create(model=MODELS[provider], messages=ASK, tools=[WEATHER])
        [choice] = called.choices
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        [call] = choice.message.tool_calls or []
        assert (call.type, call.function.name) == ("function", "weather")
        assert json.loads(call.function.arguments) == {"input": "Tokyo"}
        answered = await client.chat.completions.create(
            model=MODELS[provider], messages=tool_turns(call, "22C and sunny"), tools=[WEATHER]
        )
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content == f"{provider} says: tool said 22C and sunny"
    first, second = mesh.fake.calls(provider)[-2:]
    tools, turns = WIRE[provider]
    assert tools(first.body) == tools(EXPECTED_TOOLS[provider])
    assert turns(second.body) == turns(expected_turns(provider, call.id))


# What each provider's API is sent: the tools, and the call and its result in the second request.
WIRE: dict[str, tuple[Any, Any]] = {
    "openai": (lambda b: b["tools"], lambda b: b["messages"][1:]),
    "anthropic": (lambda b: (b["tools"], b["tool_choice"]), lambda b: b["messages"][1:]),
    "gemini": (lambda b: (b["tools"], b["toolConfig"]), lambda b: b["contents"][1:]),
    "bedrock": (lambda b: b["toolConfig"], lambda b: b["messages"][1:]),
}
EXPECTED_TOOLS: dict[str, dict[str, Any]] = {
    "openai": {"tools": [WEATHER]},
    "anthropic": {
        "tools": [{"name": "weather", "description": "The weather in a city", "input_schema": PARAMETERS}],
        "tool_choice": {"type": "auto"},
    },
    "gemini": {
        # google-genai sends this field in proto's own spelling, which Google's JSON APIs accept too.
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "description": "The weather in a city",
                        "name": "weather",
                        "parameters_json_schema": PARAMETERS,
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    },
    "bedrock": {
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "weather",
                        "description": "The weather in a city",
                        "inputSchema": {"json": PARAMETERS},
                    }
                }
            ]
        }
    },
}


def expected_turns(provider: str, call_id: str) -> dict[str, Any]:
    arguments = {"input": "Tokyo"}
    if provider == "openai":
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": "weather", "arguments": json.dumps(arguments)},
        }
        return {
            "messages": [
                None,
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call_id, "content": "22C and sunny"},
            ]
        }
    if provider == "anthropic":
        result = {"type": "tool_result", "tool_use_id": call_id, "content": "22C and sunny"}
        return {
            "messages": [
                None,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": call_id, "name": "weather", "input": arguments}],
                },
                {"role": "user", "content": [result]},
            ]
        }
    if provider == "gemini":
        plain = call_id.split("~sig~")[0]  # the mesh's id carries Gemini's thought signature
        response = {"id": plain, "name": "weather", "response": {"result": "22C and sunny"}}
        call = {
            "functionCall": {"id": plain, "name": "weather", "args": arguments},
            "thoughtSignature": "dGhvdWdodC0x",
        }
        return {
            "contents": [
                None,
                {"role": "model", "parts": [call]},
                {"role": "user", "parts": [{"functionResponse": response}]},
            ]
        }
    result = {"toolResult": {"toolUseId": call_id, "content": [{"text": "22C and sunny"}]}}
    return {
        "messages": [
            None,
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": call_id, "name": "weather", "input": arguments}}],
            },
            {"role": "user", "content": [result]},
        ]
    }


@pytest.mark.parametrize("provider", MODELS)
async def test_a_streamed_tool_call_arrives_in_openais_deltas(mesh: ToolMesh, provider: str) -> None:
    async with mesh.sdk() as client:
        stream = await client.chat.completions.create(
            model=MODELS[provider], messages=ASK, tools=[WEATHER, CLOCK], stream=True
        )
        chunks = [chunk async for chunk in stream]
    pieces = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    # The arguments come in more than one piece, but from Gemini, which sends a call whole.
    assert len(pieces) >= (1 if provider == "gemini" else 2)
    assert pieces[0].id and pieces[0].function and pieces[0].function.name == "weather"
    assert all(p.index == 0 and p.id is None for p in pieces[1:])
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments) == {"input": "Tokyo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    body = {"model": MODELS[provider], "messages": ASK, "tools": [WEATHER], "stream": True}
    async with mesh.gateway.client.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = "".join([part async for part in response.aiter_text()])
    frames = [f.removeprefix("data: ") for f in raw.split("\n\n") if f.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    for frame in frames[:-1]:
        conforms("CreateChatCompletionStreamResponse", json.loads(frame))


async def test_tool_choice_names_the_tool_or_rules_tools_out(mesh: ToolMesh) -> None:
    async with mesh.sdk() as client:
        named = await client.chat.completions.create(
            model="gpt",
            messages=ASK,
            tools=[WEATHER, CLOCK],
            tool_choice={"type": "function", "function": {"name": "clock"}},
            parallel_tool_calls=False,
        )
        none = await client.chat.completions.create(
            model="claude", messages=ASK, tools=[WEATHER], tool_choice="none"
        )
        required = await client.chat.completions.create(
            model="claude", messages=ASK, tools=[WEATHER, CLOCK], tool_choice="required"
        )
    assert (named.choices[0].message.tool_calls or [])[0].function.name == "clock"
    sent = mesh.fake.calls("openai")[-1].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "clock"}}
    assert sent["parallel_tool_calls"] is False
    assert none.choices[0].message.content == "anthropic says: Tokyo"
    assert mesh.fake.calls("anthropic")[-2].body["tool_choice"] == {"type": "none"}
    assert required.choices[0].finish_reason == "tool_calls"
    assert mesh.fake.calls("anthropic")[-1].body["tool_choice"] == {"type": "any"}
    conforms("CreateChatCompletionResponse", named.model_dump(exclude_unset=True))


async def test_a_route_passes_over_tiers_that_cannot_call_a_required_tool(mesh: ToolMesh) -> None:
    async with mesh.sdk() as client:
        # Without tools, the canned tier answers; with a required tool call, neither it nor the
        # scripted model (no tool calling) may: the route's cloud tier does.
        canned = await client.chat.completions.create(model="tooled", messages=ASK)
        called = await client.chat.completions.create(
            model="tooled", messages=ASK, tools=[WEATHER], tool_choice="required"
        )
    assert canned.choices[0].message.content == "Canned Tokyo."
    assert called.choices[0].finish_reason == "tool_calls"
    assert mesh.gateway.backend.calls == []  # the scripted model was never asked


async def test_tools_on_a_model_that_cannot_call_them_are_a_400_naming_it(mesh: ToolMesh) -> None:
    async with mesh.sdk() as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="scripted", messages=ASK, tools=[WEATHER])
    assert refused.value.body["code"] == "tools_not_supported"  # type: ignore[index]
    assert "model scripted" in refused.value.message and "cannot call tools" in refused.value.message


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "tool_choice names function 'nope', which is not in tools",
        ),
        ({"tool_choice": "required"}, "tool_choice", 'tool_choice "required" needs tools'),
        ({"tools": [WEATHER, WEATHER]}, "tools", "every tool needs a name of its own"),
        (
            {"tools": [{"type": "function", "function": {"name": "has space"}}]},
            "tools.0.function.name",
            "String should match pattern",
        ),
        (
            {"messages": [*ASK, {"role": "tool", "content": "22C"}]},
            "messages.1.tool_call_id",
            "a tool message needs the tool_call_id",
        ),
        (
            {"messages": [{"role": "user", "content": None}]},
            "messages.0.content",
            "content is required",
        ),
    ],
)
async def test_malformed_tool_requests_are_400s_naming_the_field(
    mesh: ToolMesh, body: dict[str, Any], param: str, words: str
) -> None:
    response = await mesh.gateway.client.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": ASK, **body}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert words in error["message"], error["message"]
    assert mesh.fake.calls("openai") == []


async def test_a_tool_result_for_a_call_never_made_is_refused_before_any_model_runs(mesh: ToolMesh) -> None:
    messages = [*ASK, {"role": "tool", "tool_call_id": "call_404", "content": "22C"}]
    response = await mesh.gateway.client.post(
        "/v1/chat/completions", json={"model": "gpt", "messages": messages, "tools": [WEATHER]}
    )
    assert response.status_code == 400
    assert "tool call 'call_404', which no earlier assistant turn made" in response.json()["error"]["message"]
    assert mesh.fake.calls("openai") == []


async def test_a_call_whose_arguments_are_not_json_is_a_400_not_a_crash(mesh: ToolMesh) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{not json"}}
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "22C"}]  # fmt: skip
    response = await mesh.gateway.client.post(
        "/v1/chat/completions", json={"model": "claude", "messages": messages, "tools": [WEATHER]}
    )
    assert response.status_code == 400
    assert "the arguments of tool call 'call_1' are not a JSON object" in response.json()["error"]["message"]
    assert mesh.fake.calls("anthropic") == []


async def test_a_stored_conversation_keeps_the_calls_and_their_results(database_url: str) -> None:
    """With conversation_id the client sends only its new turn: the call, then only the tool's result
    (on both databases: the calls are stored as JSON)."""
    stored = {"conversation_id": "trip-1"}
    async with tool_mesh(database_url) as mesh:
        async with mesh.sdk() as client:
            called = await client.chat.completions.create(
                model="claude", messages=ASK, tools=[WEATHER], extra_body=stored
            )
            [call] = called.choices[0].message.tool_calls or []
            answered = await client.chat.completions.create(
                model="claude",
                messages=[{"role": "tool", "tool_call_id": call.id, "content": "22C and sunny"}],
                tools=[WEATHER],
                extra_body=stored,
            )
        kept = await mesh.gateway.client.get("/api/v1/conversations/trip-1")
        sent = mesh.fake.calls("anthropic")[-1].body["messages"]
    assert answered.choices[0].message.content == "anthropic says: tool said 22C and sunny"
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["type"] == "tool_use" and sent[2]["content"][0]["tool_use_id"] == call.id
    assert kept.status_code == 200
    assert kept.json()["messages"] == [
        {"role": "user", "content": "Tokyo"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": call.id, "name": "weather", "arguments": call.function.arguments}],
        },
        {"role": "tool", "content": "22C and sunny", "tool_call_id": call.id},
        {"role": "assistant", "content": "anthropic says: tool said 22C and sunny"},
    ]


def anthropic_sdk(mesh: ToolMesh) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=str(mesh.gateway.client.base_url), api_key="unused", max_retries=0
    )


ANTHROPIC_WEATHER = {
    "name": "weather",
    "description": "The weather in a city",
    "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
}


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_the_anthropic_sdk_calls_tools_on_any_backend(mesh: ToolMesh, model: str) -> None:
    """Anthropic's tool use through the mesh's Messages door, served by an OpenAI or an Anthropic model."""
    async with anthropic_sdk(mesh) as client:
        called = await client.messages.create(
            model=model,
            max_tokens=64,
            messages=[{"role": "user", "content": "Tokyo"}],
            tools=[ANTHROPIC_WEATHER],
        )
        assert called.stop_reason == "tool_use"
        [use] = [block for block in called.content if block.type == "tool_use"]
        assert (use.name, use.input) == ("weather", {"input": "Tokyo"})
        answered = await client.messages.create(
            model=model,
            max_tokens=64,
            tools=[ANTHROPIC_WEATHER],
            messages=[
                {"role": "user", "content": "Tokyo"},
                {"role": "assistant", "content": [block.model_dump() for block in called.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22C"}],
                },
            ],
        )
        async with client.messages.stream(
            model=model,
            max_tokens=64,
            messages=[{"role": "user", "content": "Tokyo"}],
            tools=[ANTHROPIC_WEATHER],
            tool_choice={"type": "tool", "name": "weather"},
        ) as stream:
            streamed = await stream.get_final_message()
    provider = "openai" if model == "gpt" else "anthropic"
    assert answered.stop_reason == "end_turn"
    assert (
        answered.content[0].type == "text" and answered.content[0].text == f"{provider} says: tool said 22C"
    )
    assert streamed.stop_reason == "tool_use"
    [streamed_use] = [block for block in streamed.content if block.type == "tool_use"]
    assert (streamed_use.name, streamed_use.input) == ("weather", {"input": "Tokyo"})


@pytest.mark.parametrize("stream", [False, True])
async def test_the_ollama_client_calls_tools(mesh: ToolMesh, stream: bool) -> None:
    """Ollama's tool calls have no ids: a tool turn answers its tool's call by the tool's name."""
    client = ollama.AsyncClient(host=str(mesh.gateway.client.base_url))
    async with client:
        await _ollama_round_trip(mesh, client, stream)


async def _ollama_round_trip(mesh: ToolMesh, client: ollama.AsyncClient, stream: bool) -> None:
    async def chat(messages: list[Any]) -> Any:
        if not stream:
            return (await client.chat(model="gemini", messages=messages, tools=[WEATHER])).message
        parts = [
            part
            async for part in await client.chat(
                model="gemini", messages=messages, tools=[WEATHER], stream=True
            )
        ]
        assert parts[-1].done
        calls = [call for part in parts for call in part.message.tool_calls or []]
        return ollama.Message(
            role="assistant",
            content="".join(p.message.content or "" for p in parts),
            tool_calls=calls or None,
        )

    called = await chat([{"role": "user", "content": "Tokyo"}])
    [call] = called.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("weather", {"input": "Tokyo"})
    answered = await chat(
        [
            {"role": "user", "content": "Tokyo"},
            called,
            {"role": "tool", "content": "22C", "tool_name": "weather"},
        ]
    )
    assert answered.content == "gemini says: tool said 22C"
    sent = mesh.fake.calls("gemini")[-1].body["contents"]
    assert sent[1]["parts"][0]["functionCall"]["name"] == "weather"
    assert sent[2]["parts"][0]["functionResponse"]["name"] == "weather"


async def test_an_ollama_tool_turn_with_no_call_to_answer_is_a_400(mesh: ToolMesh) -> None:
    client = ollama.AsyncClient(host=str(mesh.gateway.client.base_url))
    with pytest.raises(ollama.ResponseError) as refused:
        await client.chat(
            model="gemini",
            messages=[{"role": "user", "content": "Tokyo"}, {"role": "tool", "content": "22C"}],
        )
    assert refused.value.status_code == 400
    assert "answers no tool call" in refused.value.error


@pytest.mark.parametrize("model", ["gpt", "claude"])
@pytest.mark.parametrize("stream", [False, True])
async def test_text_and_two_calls_in_one_turn(mesh: ToolMesh, model: str, stream: bool) -> None:
    mesh.fake.then("parallel")
    async with mesh.sdk() as client:
        if stream:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    model=model, messages=ASK, tools=[WEATHER, CLOCK], stream=True
                )
            ]
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            text = "".join(d.content or "" for d in deltas)
            pieces = [p for d in deltas for p in d.tool_calls or []]
            calls = {p.index: p for p in pieces if p.id}
            arguments = {
                i: "".join(p.function.arguments or "" for p in pieces if p.index == i and p.function)
                for i in calls
            }
            names = {i: calls[i].function.name for i in calls}  # type: ignore[union-attr]
            assert all(
                p.id is None for p in pieces if p not in calls.values()
            )  # ids once, on the first piece
        else:
            reply = (
                await client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER, CLOCK])
            ).choices[0]
            text = reply.message.content or ""
            made = reply.message.tool_calls or []
            names = {i: c.function.name for i, c in enumerate(made)}
            arguments = {i: c.function.arguments for i, c in enumerate(made)}
    assert text == "Let me check."
    assert names == {0: "weather", 1: "clock"}
    assert {i: json.loads(a) for i, a in arguments.items()} == {
        0: {"input": "Tokyo"},
        1: {"input": "Tokyo too"},
    }


async def test_the_anthropic_door_streams_each_block_in_anthropics_order(mesh: ToolMesh) -> None:
    mesh.fake.then("parallel")
    body = {"model": "gpt", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "Tokyo"}],
            "tools": [ANTHROPIC_WEATHER, {"name": "clock", "input_schema": {"type": "object"}}]}  # fmt: skip
    async with mesh.gateway.client.stream("POST", "/v1/messages", json=body) as response:
        raw = "".join([part async for part in response.aiter_text()])
    events = [
        json.loads(line.removeprefix("data: ")) for line in raw.splitlines() if line.startswith("data: ")
    ]
    shape = [
        (e["type"], e.get("index"), (e.get("content_block") or e.get("delta") or {}).get("type"))
        for e in events
    ]
    deduplicated = [step for i, step in enumerate(shape) if i == 0 or step != shape[i - 1]]
    assert deduplicated == [
        ("message_start", None, None),
        ("content_block_start", 0, "text"),
        ("ping", None, None),
        ("content_block_delta", 0, "text_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "tool_use"),
        ("content_block_delta", 1, "input_json_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


async def test_bedrock_gets_alternating_turns_when_results_come_with_text(mesh: ToolMesh) -> None:
    """An Anthropic user turn holds tool results and text; Converse wants one user turn, no blank text."""
    async with anthropic_sdk(mesh) as client:
        await client.messages.create(
            model="nova",
            max_tokens=64,
            tools=[ANTHROPIC_WEATHER],
            messages=[
                {"role": "user", "content": "Tokyo"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": ""},
                        {"type": "text", "text": "and tomorrow?"},
                    ],
                },
            ],
        )
    sent = mesh.fake.calls("bedrock")[-1].body["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": "t1", "content": [{"json": {}}]}},
        {"text": "and tomorrow?"},
    ]


CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}  # fmt: skip


@pytest.mark.parametrize(
    ("messages", "tools", "words"),
    [
        (
            [
                *ASK,
                CALLED,
                {"role": "tool", "tool_call_id": "c1", "content": "a"},
                {"role": "tool", "tool_call_id": "c1", "content": "b"},
            ],
            [WEATHER],
            "tool call 'c1' is answered twice",
        ),
        (
            [*ASK, CALLED, *ASK],
            [WEATHER],
            "tool call 'c1' has no tool message answering it before the next turn",
        ),
        (
            [*ASK, CALLED, {"role": "tool", "tool_call_id": "c1", "content": "a"}],
            None,
            "send the tools they called",
        ),
    ],
)
async def test_tool_conversations_providers_would_refuse_are_400s_here(
    mesh: ToolMesh, messages: list[dict[str, Any]], tools: list[Any] | None, words: str
) -> None:
    body: dict[str, Any] = {"model": "claude", "messages": messages, **({"tools": tools} if tools else {})}
    response = await mesh.gateway.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]
    assert mesh.fake.calls("anthropic") == []


async def test_gemini_gets_its_thought_signature_back_with_the_call(mesh: ToolMesh) -> None:
    """Gemini's thinking models refuse a function call sent back without its thought signature: the
    mesh carries it in the call's id, which every client returns."""
    async with mesh.sdk() as client:
        called = await client.chat.completions.create(model="gemini", messages=ASK, tools=[WEATHER])
        [call] = called.choices[0].message.tool_calls or []
        await client.chat.completions.create(
            model="gemini", messages=tool_turns(call, "22C"), tools=[WEATHER]
        )
    model_turn = mesh.fake.calls("gemini")[-1].body["contents"][1]["parts"][0]
    signature = model_turn.get("thoughtSignature") or model_turn.get("thought_signature")
    assert base64.b64decode(signature) == b"thought-1"
    assert "~sig~" not in json.dumps(mesh.fake.calls("gemini")[-1].body)  # the provider sees its own ids

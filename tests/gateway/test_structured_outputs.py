"""Structured outputs and logprobs through the OpenAI API: `client.chat.completions.parse(...)` with
pydantic models on the real local model (constrained decoding in llama.cpp's engine) and on an
OpenAI-compatible backend (response_format passed on, the reply checked and retried once),
json_object, per-token logprobs (streamed and not), the refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path

import openai
import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from services.orchestrator.routing import output_problem
from tests.support.fake_providers import FakeProviders
from tests.support.mesh import GEMMA, PROVIDER_ENV, Gateway, gemma_mesh, provider_mesh
from tests.support.openai_schema import conforms

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Colour(StrEnum):
    red = "red"
    green = "green"
    blue = "blue"


# Bounded strings and lists: a 270M model under a grammar may otherwise fill its token budget with one.
class Shade(BaseModel):
    colour: Colour
    name: str = Field(max_length=16)


class Palette(BaseModel):
    title: str = Field(max_length=24)
    shades: list[Shade] = Field(min_length=1, max_length=3)
    warm: bool


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    database = tmp_path_factory.mktemp("structured") / "s.db"
    async with gemma_mesh(f"sqlite+aiosqlite:///{database}", model_path) as gateway:
        yield gateway


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.client.base_url}/v1", api_key="unused", max_retries=0)


async def test_parse_gives_the_pydantic_model_on_the_local_model(mesh: Gateway) -> None:
    """Nested objects, an enum and a list, as the SDK's strict json_schema asks, decoded under it."""
    async with sdk(mesh) as client:
        completion = await client.chat.completions.parse(
            model=GEMMA,
            messages=[{"role": "user", "content": "Describe a palette of two colours."}],
            response_format=Palette,
            max_tokens=200,
            temperature=0,
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    palette = choice.message.parsed
    assert isinstance(palette, Palette)
    assert all(isinstance(shade.colour, Colour) for shade in palette.shades)
    assert Palette.model_validate_json(choice.message.content or "") == palette


async def test_json_object_and_a_canned_route(mesh: Gateway) -> None:
    """A route's canned tier answers no constrained request: "hello" would get the canned "Hi there!"."""
    async with sdk(mesh) as client:
        completion = await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "hello"}],
            response_format={"type": "json_object"},
            max_tokens=60,
            temperature=0,
        )
    assert completion.model == "default"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(
    ("response_format", "code", "words"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
            "invalid_constraint",
            "the JSON schema is invalid",
        ),
        ({"type": "json_schema"}, "invalid_request", "needs json_schema"),
        ({"type": "yaml"}, "invalid_request", "response_format.type"),
    ],
)
async def test_a_bad_response_format_is_a_400_naming_the_problem(
    mesh: Gateway, response_format: dict, code: str, words: str
) -> None:
    body = {
        "model": GEMMA,
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": response_format,
    }
    response = await mesh.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error


async def test_a_model_that_cannot_constrain_is_a_400_naming_it(mesh: Gateway) -> None:
    async with sdk(mesh) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="scripted",
                messages=[{"role": "user", "content": "hi"}],
                response_format={"type": "json_object"},
            )
    assert refused.value.body["code"] == "unsupported_output_control"  # type: ignore[index]
    assert "model scripted" in refused.value.message


async def test_logprobs_of_the_local_model_streamed_and_not(mesh: Gateway) -> None:
    ask = {
        "model": GEMMA,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 8,
        "temperature": 0,
    }
    async with sdk(mesh) as client:
        whole = await client.chat.completions.create(**ask, logprobs=True, top_logprobs=2)
        stream = await client.chat.completions.create(**ask, logprobs=True, stream=True)
        chunks = [chunk async for chunk in stream]
        plain = await client.chat.completions.create(**ask)
    choice = whole.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    assert all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in tokens)
    streamed = [
        t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []
    ]
    assert "".join(t.token for t in streamed) == choice.message.content  # greedy: the same tokens
    assert plain.choices[0].logprobs is None
    raw = await mesh.client.post("/v1/chat/completions", json={**ask, "logprobs": True, "top_logprobs": 1})
    conforms("CreateChatCompletionResponse", raw.json())


async def test_logprobs_of_a_legacy_completion_streamed_and_not(mesh: Gateway) -> None:
    """The completions API's own shape: tokens, token_logprobs, top_logprobs (token → logprob) and
    text_offset, with `logprobs` the number of alternatives."""
    ask = {"model": GEMMA, "prompt": "The sky is", "max_tokens": 6, "temperature": 0}
    async with sdk(mesh) as client:
        whole = await client.completions.create(**ask, logprobs=2)
        streamed = [chunk async for chunk in await client.completions.create(**ask, logprobs=2, stream=True)]
    choice = whole.choices[0]
    scores = choice.logprobs
    assert scores is not None and scores.tokens and "".join(scores.tokens) == choice.text
    assert len(scores.token_logprobs or []) == len(scores.tokens) and all(
        p <= 0 for p in scores.token_logprobs or []
    )
    assert all(len(top) <= 2 for top in scores.top_logprobs or []) and any(scores.top_logprobs or [])
    assert scores.text_offset == [sum(len(t) for t in scores.tokens[:i]) for i in range(len(scores.tokens))]
    pieces = [c.choices[0].logprobs for c in streamed if c.choices and c.choices[0].logprobs]
    assert [t for p in pieces for t in p.tokens or []] == scores.tokens  # greedy: the same tokens
    assert [o for p in pieces for o in p.text_offset or []] == scores.text_offset
    raw = await mesh.client.post("/v1/completions", json={**ask, "logprobs": 1})
    conforms("CreateCompletionResponse", raw.json())
    refused = await mesh.client.post("/v1/completions", json={**ask, "logprobs": 6})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "logprobs"


async def test_logprobs_are_refused_where_they_cannot_be_given(mesh: Gateway) -> None:
    asked = {"messages": [{"role": "user", "content": "hi"}]}
    scripted = await mesh.client.post(
        "/v1/chat/completions", json={"model": "scripted", **asked, "logprobs": True}
    )
    assert scripted.status_code == 400
    assert scripted.json()["error"]["code"] == "unsupported_output_control"
    assert "does not report logprobs" in scripted.json()["error"]["message"]
    alone = await mesh.client.post("/v1/chat/completions", json={"model": GEMMA, **asked, "top_logprobs": 2})
    assert alone.status_code == 400 and alone.json()["error"]["param"] == "top_logprobs"


def test_output_problems_name_what_is_wrong() -> None:
    from llmmesh.common.v1 import common_pb2

    schema = common_pb2.OutputConstraint(
        json_schema=common_pb2.JsonSchemaConstraint(schema=json.dumps(Palette.model_json_schema()))
    )
    whole = common_pb2.OutputConstraint(json_object=common_pb2.JsonObjectConstraint())
    good = {"title": "t", "shades": [{"colour": "red", "name": "r"}], "warm": True}
    assert output_problem(schema, json.dumps(good)) is None
    assert output_problem(schema, "{") == "the output is not JSON"
    bad = output_problem(schema, json.dumps({**good, "shades": [{"colour": "pink", "name": "p"}]}))
    assert bad is not None and "shades/0/colour" in bad
    assert output_problem(whole, "[1]") == "the output is not a JSON object"
    assert output_problem(common_pb2.OutputConstraint(grammar="root ::= x"), "anything") is None


@pytest_asyncio.fixture(loop_scope="module")
async def cloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Gateway, FakeProviders]]:
    for name, value in PROVIDER_ENV.items():
        monkeypatch.setenv(name, value)
    # The scripted backend does not constrain output: a JSON request on the route passes it over.
    routes = {"default": [{"model": "scripted"}], "json": [{"model": "scripted"}, {"model": "gpt"}]}
    async with provider_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", routes=routes) as mesh:
        yield mesh


async def test_an_openai_compatible_backend_gets_response_format_and_the_reply_is_checked(
    cloud: tuple[Gateway, FakeProviders],
) -> None:
    gateway, fake = cloud
    async with sdk(gateway) as client:
        parsed = await client.chat.completions.parse(
            model="json", messages=[{"role": "user", "content": "a palette"}], response_format=Palette
        )
        fake.then("badjson")  # invalid once: retried at once, the client never sees it
        retried = await client.chat.completions.parse(
            model="gpt", messages=[{"role": "user", "content": "a palette"}], response_format=Palette
        )
        fake.then("badjson", "badjson")
        with pytest.raises(openai.APIStatusError) as failed:
            await client.chat.completions.parse(
                model="gpt", messages=[{"role": "user", "content": "a palette"}], response_format=Palette
            )
    assert isinstance(parsed.choices[0].message.parsed, Palette)
    assert isinstance(retried.choices[0].message.parsed, Palette)
    sent = fake.calls("openai")[0].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert (
        sent["json_schema"]["schema"]["properties"].keys() == Palette.model_json_schema()["properties"].keys()
    )
    assert failed.value.status_code == 502
    assert failed.value.body["code"] == "upstream_invalid_output"  # type: ignore[index]
    assert "the output is not JSON" in failed.value.message


@pytest.mark.parametrize("model", ["claude", "gemini", "nova"])
async def test_every_cloud_backend_answers_the_schema_streamed_and_not(
    cloud: tuple[Gateway, FakeProviders], model: str
) -> None:
    """Anthropic and Bedrock through a tool the model must call (their APIs take no answer schema),
    Gemini through response_json_schema; the reply is checked, an invalid one retried once."""
    gateway, fake = cloud
    asked = [{"role": "user", "content": "a palette"}]
    async with sdk(gateway) as client:
        parsed = await client.chat.completions.parse(model=model, messages=asked, response_format=Palette)
        pieces: list[str] = []
        finish: list[str] = []
        stream = await client.chat.completions.create(
            model=model,
            messages=asked,
            stream=True,
            response_format={"type": "json_schema", "json_schema": {"name": "palette", "schema": Palette.model_json_schema()}},
        )  # fmt: skip
        async for chunk in stream:
            conforms("CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True))
            pieces += [c.delta.content or "" for c in chunk.choices]
            assert not any(c.delta.tool_calls for c in chunk.choices)  # the answer tool stays inside
            finish += [c.finish_reason for c in chunk.choices if c.finish_reason]
        fake.then("badjson")
        retried = await client.chat.completions.parse(model=model, messages=asked, response_format=Palette)
    choice = parsed.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert isinstance(choice.message.parsed, Palette)
    assert Palette.model_validate_json("".join(pieces)) and finish == ["stop"]
    assert isinstance(retried.choices[0].message.parsed, Palette)
    provider = {"claude": "anthropic", "gemini": "gemini", "nova": "bedrock"}[model]
    sent = fake.calls(provider)[0].body
    if model == "claude":
        assert sent["tool_choice"] == {
            "type": "tool",
            "name": "structured_output",
            "disable_parallel_tool_use": True,
        }
        assert sent["tools"][0]["input_schema"]["properties"].keys() == Palette.model_fields.keys()
    elif model == "nova":
        assert sent["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_output"}}
        schema = sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
        assert schema["properties"].keys() == Palette.model_fields.keys()
    else:
        generation = sent["generationConfig"]
        assert generation["responseMimeType"] == "application/json"
        assert generation["responseJsonSchema"]["properties"].keys() == Palette.model_fields.keys()


@pytest.mark.parametrize("model", ["claude", "nova"])
async def test_tools_and_a_schema_together_call_the_tool_then_answer_the_schema(
    cloud: tuple[Gateway, FakeProviders], model: str
) -> None:
    """With the caller's tools on "auto" the model may call them or give the answer; the answer tool
    never shows as a call of the caller's."""
    gateway, fake = cloud
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    weather = {"type": "function", "function": {"name": "weather", "parameters": parameters, "strict": True}}
    asked: list[dict] = [{"role": "user", "content": "Tokyo"}]
    async with sdk(gateway) as client:
        first = await client.chat.completions.parse(
            model=model, messages=asked, tools=[weather], response_format=Palette
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        asked += [
            {"role": "assistant", "tool_calls": [call.model_dump(include={"id", "type", "function"})]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        final = await client.chat.completions.parse(
            model=model, messages=asked, tools=[weather], response_format=Palette
        )
    assert first.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in first.choices[0].message.tool_calls or []] == ["weather"]
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert isinstance(final.choices[0].message.parsed, Palette)
    provider = {"claude": "anthropic", "nova": "bedrock"}[model]
    sent = fake.calls(provider)[-1].body
    declared = [t["name"] for t in sent["tools"]] if model == "claude" else [
        t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]
    ]  # fmt: skip
    assert declared == ["weather", "structured_output"]


async def test_an_openai_compatible_backend_passes_logprobs_on_streamed_and_not(
    cloud: tuple[Gateway, FakeProviders],
) -> None:
    gateway, fake = cloud
    asked = [{"role": "user", "content": "two words"}]
    async with sdk(gateway) as client:
        plain = await client.chat.completions.create(
            model="gpt", messages=asked, logprobs=True, top_logprobs=2
        )
        streamed = [
            chunk
            async for chunk in await client.chat.completions.create(
                model="gpt", messages=asked, logprobs=True, top_logprobs=2, stream=True
            )
        ]
    sent = fake.calls("openai")[0].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    content = plain.choices[0].logprobs.content  # type: ignore[union-attr]
    assert (
        "".join(t.token for t in content or [])
        == plain.choices[0].message.content
        == "openai says: two words"
    )
    assert all(
        t.logprob == -0.25 and [a.logprob for a in t.top_logprobs] == [-1.0, -2.0] for t in content or []
    )
    assert content and content[0].bytes == list(content[0].token.encode())
    pieces = [
        t for c in streamed for choice in c.choices if choice.logprobs for t in choice.logprobs.content or []
    ]
    assert [t.token for t in pieces] == [t.token for t in content]
    for chunk in streamed:
        conforms("CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True))
    conforms("CreateChatCompletionResponse", plain.model_dump(mode="json", exclude_unset=True))

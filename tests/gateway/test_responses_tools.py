"""Function tools and structured output through the Responses API, with the official `openai` SDK,
on the cloud backends' fakes: a call → function_call_output → answer round trip, continued from the
stored response (previous_response_id) and sent whole (store=false), streamed and not; the stored
response and its input items read back with their function_call items; tool_choice variants; and
`responses.parse(text_format=...)` on a backend that takes a schema and one that takes a forced tool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from tests.support.fake_providers import FakeProviders
from tests.support.mesh import PROVIDER_ENV, Gateway, provider_mesh
from tests.support.openai_schema import conforms

pytestmark = pytest.mark.asyncio(loop_scope="module")

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK = {"type": "function", "name": "clock", "parameters": {"type": "object", "properties": {}}}
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
}


class Forecast(BaseModel):
    city: str = Field(max_length=16)
    sunny: bool


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Gateway, FakeProviders]]:
    monkeypatch = pytest.MonkeyPatch()
    for name, value in PROVIDER_ENV.items():
        monkeypatch.setenv(name, value)
    database = tmp_path_factory.mktemp("responses-tools") / "s.db"
    try:
        async with provider_mesh(f"sqlite+aiosqlite:///{database}") as mesh:
            yield mesh
    finally:
        monkeypatch.undo()


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.client.base_url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_a_function_call_round_trip_continued_from_the_stored_response(
    cloud: tuple[Gateway, FakeProviders], model: str
) -> None:
    gateway, fake = cloud
    async with sdk(gateway) as client:
        first = await client.responses.create(model=model, input="Tokyo", tools=[WEATHER])  # type: ignore[list-item]
        [call] = first.output
        assert call.type == "function_call"
        second = await client.responses.create(
            model=model,
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER],  # type: ignore[list-item]
        )
        stored = await client.responses.retrieve(first.id)
        items = await client.responses.input_items.list(second.id)
    assert first.status == "completed" and call.name == "weather" and call.status == "completed"
    assert json.loads(call.arguments) == {"input": "Tokyo"} and call.id.startswith("fc_")
    assert first.output_text == ""
    provider = {"claude": "anthropic", "gpt": "openai"}[model]
    assert second.output_text == f"{provider} says: tool said sunny"
    # The provider got the call and its result as its own API has them, after the first turn.
    sent = fake.calls(provider)[-1].body
    if model == "claude":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][1]["content"][0]["type"] == "tool_use"
        assert sent["messages"][2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": call.call_id,
            "content": "sunny",
        }
    else:
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
        assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id
    # Read back as created: the same function_call item, with its id.
    assert stored.output[0].model_dump() == call.model_dump()
    conforms("Response", stored.model_dump(mode="json", by_alias=True, exclude_unset=True))
    [output_item] = items.data
    assert (output_item.type, output_item.call_id, output_item.output) == (
        "function_call_output",
        call.call_id,
        "sunny",
    )  # type: ignore[union-attr]
    assert output_item.id.startswith("fco_")


async def test_a_whole_conversation_sent_back_unstored_and_streamed(
    cloud: tuple[Gateway, FakeProviders],
) -> None:
    gateway, _ = cloud
    async with sdk(gateway) as client:
        kinds: list[str] = []
        async with client.responses.stream(
            model="claude", input="Osaka", tools=[WEATHER], store=False
        ) as stream:  # type: ignore[list-item]
            async for event in stream:
                kinds.append(event.type)
                data = event.model_dump(mode="json", by_alias=True, exclude_unset=True)
                conforms(EVENT_SCHEMAS[event.type], data)
            streamed = await stream.get_final_response()
        [call] = streamed.output
        assert call.type == "function_call"
        answer = await client.responses.create(
            model="claude",
            store=False,
            tools=[WEATHER],  # type: ignore[list-item]
            input=[
                {"role": "user", "content": "Osaka"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.name,
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
            ],
        )
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(answer.id)
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds.count("response.function_call_arguments.delta") == 2  # the fake streams it in halves
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert json.loads(call.arguments) == {"input": "Osaka"}
    assert answer.output_text == "anthropic says: tool said rain"


async def test_text_after_a_call_keeps_its_streamed_place_in_the_final_object(
    cloud: tuple[Gateway, FakeProviders],
) -> None:
    gateway, fakes = cloud
    fakes.then("aftertext")
    added: dict[int, str] = {}
    async with sdk(gateway) as client:
        async with client.responses.stream(
            model="claude", input="Kyoto", tools=[WEATHER], store=False
        ) as stream:  # type: ignore[list-item]
            async for event in stream:
                if event.type == "response.output_item.added":
                    added[event.output_index] = event.item.type
                if event.type == "response.completed":
                    completed = [item.type for item in event.response.output]
            streamed = await stream.get_final_response()
    assert added == {0: "function_call", 1: "message"}  # in the order the model wrote them
    assert completed == ["function_call", "message"]
    assert [item.type for item in streamed.output] == ["function_call", "message"]
    assert streamed.output_text == "I asked for it."


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", {"type": "any"}),
        ({"type": "function", "name": "clock"}, {"type": "tool", "name": "clock"}),
    ],
)
async def test_tool_choice_reaches_the_provider(
    cloud: tuple[Gateway, FakeProviders], choice: Any, sent: dict[str, Any]
) -> None:
    gateway, fake = cloud
    async with sdk(gateway) as client:
        response = await client.responses.create(
            model="claude",
            input="what time is it",
            tools=[WEATHER, CLOCK],  # type: ignore[list-item]
            tool_choice=choice,
            parallel_tool_calls=False,
        )
    assert fake.calls("anthropic")[-1].body["tool_choice"] == {**sent, "disable_parallel_tool_use": True}
    assert response.output[0].type == "function_call"
    assert response.tool_choice == choice if isinstance(choice, str) else response.tool_choice.name == "clock"  # type: ignore[union-attr]
    conforms("Response", response.model_dump(mode="json", by_alias=True, exclude_unset=True))


async def test_tool_choice_none_answers_in_text(cloud: tuple[Gateway, FakeProviders]) -> None:
    gateway, _ = cloud
    async with sdk(gateway) as client:
        response = await client.responses.create(
            model="gpt", input="Kyoto", tools=[WEATHER], tool_choice="none"
        )  # type: ignore[list-item]
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "openai says: Kyoto"


@pytest.mark.parametrize("model", ["gpt", "claude", "gemini"])
async def test_parse_with_a_text_format(cloud: tuple[Gateway, FakeProviders], model: str) -> None:
    gateway, fake = cloud
    async with sdk(gateway) as client:
        parsed = await client.responses.parse(model=model, input="the forecast", text_format=Forecast)
        fake.then("badjson")  # invalid once: retried, never seen
        retried = await client.responses.parse(model=model, input="the forecast", text_format=Forecast)
    assert isinstance(parsed.output_parsed, Forecast) and isinstance(retried.output_parsed, Forecast)
    assert [item.type for item in parsed.output] == ["message"]
    assert parsed.text.format.type == "json_schema"  # type: ignore[union-attr]
    text_format = {
        "type": "json_schema",
        "name": "forecast",
        "schema": Forecast.model_json_schema(),
        "strict": True,
    }
    raw = await gateway.client.post(
        "/v1/responses", json={"model": model, "input": "the forecast", "text": {"format": text_format}}
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["text"] == {"format": text_format}  # echoed as sent
    conforms("Response", raw.json())
    conforms(
        "Response",
        parsed.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"output_parsed"}),
    )


async def test_a_model_without_tools_is_a_400_naming_it(cloud: tuple[Gateway, FakeProviders]) -> None:
    gateway, _ = cloud
    async with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="scripted", input="hi", tools=[WEATHER])  # type: ignore[list-item]
    assert refused.value.body["code"] == "tools_not_supported"  # type: ignore[index]
    assert "model scripted" in refused.value.message

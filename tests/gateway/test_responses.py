"""The Responses API, driven by the official `openai` SDK (and raw HTTP for the SSE framing) against
the whole mesh (scripted models) on real sockets: create, stream, retrieve, delete, input items,
previous_response_id chains that the model sees whole and that outlive a restart of the mesh, store
false, another project's responses, and the fields refused with 400. Every object and event is
checked against OpenAI's published schemas (tests/gateway/openai_schema)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.auth import ADMIN, ADMIN_TOKEN
from tests.support.http import assert_error, sse_events
from tests.support.mesh import Gateway, eventually, scripted_mesh
from tests.support.openai_schema import conforms

EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}
STARTED = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
FINISHED = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=5) as mesh:
        yield mesh


def sdk(gateway: Gateway, api_key: str = "unused-when-auth-is-off") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.client.base_url}/v1", api_key=api_key, max_retries=0)


def seen(gateway: Gateway) -> list[tuple[str, str]]:
    """The turns the model was given in its last call."""
    return [(m.role, m.content) for m in gateway.backend.calls[-1].request.messages]


async def test_create_with_text_input_and_instructions(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        response = await client.responses.create(
            model="scripted",
            input="what is the sea",
            instructions="Be brief.",
            max_output_tokens=20,
            temperature=0,
            top_p=0.5,
            metadata={"ticket": "42"},
        )
    assert response.id.startswith("resp_")
    assert (response.object, response.status, response.model) == ("response", "completed", "scripted")
    assert response.output_text == "echo: what is the sea"  # the SDK joins the output messages' text
    [message] = response.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_")
    assert [(part.type, part.text) for part in message.content] == [("output_text", "echo: what is the sea")]
    assert response.usage is not None
    # The scripted model counts words: 4 in, 5 out ("echo:" and the 4 words).
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        4,
        5,
        9,
    )
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert (response.instructions, response.max_output_tokens, response.temperature, response.top_p) == (
        "Be brief.",
        20,
        0,
        0.5,
    )
    assert response.metadata == {"ticket": "42"} and response.store is True
    assert response.previous_response_id is None and response.error is None
    assert response.created_at > 1.7e9 and response.completed_at is not None
    assert seen(gateway) == [("system", "Be brief."), ("user", "what is the sea")]
    sampling = gateway.backend.calls[-1].request.sampling
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p) == (20, 0.0, 0.5)
    raw = await gateway.client.post("/v1/responses", json={"model": "scripted", "input": "hello"})
    assert raw.status_code == 200, raw.text
    conforms("Response", raw.json())
    assert "output_text" not in raw.json()  # an SDK convenience, not a field of the API


async def test_item_input_keeps_roles_and_lists_as_input_items(gateway: Gateway) -> None:
    items: Any = [
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first question"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "second "}, {"type": "input_text", "text": "one"}],
        },
    ]
    async with sdk(gateway) as client:
        response = await client.responses.create(model="scripted", input=items)
        newest_first = await client.responses.input_items.list(response.id)
        page = await client.responses.input_items.list(response.id, order="asc", limit=2)
        rest = await client.responses.input_items.list(response.id, order="asc", after=page.data[-1].id)
    assert response.output_text == "echo: second one"
    assert seen(gateway) == [
        ("system", "Answer in French."),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second one"),
    ]
    assert [item.role for item in newest_first.data] == ["user", "assistant", "user", "developer"]
    assert newest_first.has_more is False
    assert (
        newest_first.first_id == newest_first.data[0].id and newest_first.last_id == newest_first.data[-1].id
    )
    assert [item.role for item in page.data] == ["developer", "user"] and page.has_more is True
    assert [item.role for item in rest.data] == ["assistant", "user"] and rest.has_more is False
    listed = await gateway.client.get(f"/v1/responses/{response.id}/input_items", params={"order": "asc"})
    conforms("ResponseItemList", listed.json())
    data = listed.json()["data"]
    assert data[0]["content"] == [{"type": "input_text", "text": "Answer in French."}]
    assert data[2]["content"][0] == {
        "type": "output_text",
        "text": "first answer",
        "annotations": [],
        "logprobs": [],
    }
    assert data[3]["content"] == [{"type": "input_text", "text": "second one"}]  # the parts as one text
    unknown = await gateway.client.get(
        f"/v1/responses/{response.id}/input_items", params={"after": "msg_nope"}
    )
    assert_error(unknown, 400, "input_item_not_found")
    assert unknown.json()["error"]["param"] == "after"


async def test_streamed_events_come_in_openais_order(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        stream = await client.responses.create(model="scripted", input="tell me more", stream=True)
        events = [event async for event in stream]
        stored = await client.responses.retrieve(events[0].response.id)  # type: ignore[union-attr]
    kinds = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert kinds == STARTED + ["response.output_text.delta"] * len(deltas) + FINISHED
    assert len(deltas) == 4, "one event per piece of text the model produced"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response  # type: ignore[union-attr]
    assert events[0].response.status == "in_progress" and events[0].response.output == []  # type: ignore[union-attr]
    assert completed.status == "completed"
    assert "".join(deltas) == completed.output_text == "echo: tell me more"
    assert {event.item_id for event in events if hasattr(event, "item_id")} == {completed.output[0].id}
    assert stored.output_text == completed.output_text and stored.id == completed.id
    assert stored.status == "completed" and stored.usage is not None and stored.usage.output_tokens == 4


async def test_stream_framing_and_schemas(gateway: Gateway) -> None:
    async with gateway.client.stream(
        "POST", "/v1/responses", json={"model": "scripted", "input": "frame this", "stream": True}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    assert "[DONE]" not in body  # the Responses API ends with response.completed, not [DONE]
    events = sse_events(body)
    for kind, data in events:
        assert data["type"] == kind  # the SSE event name repeats the payload's type
        conforms(EVENT_SCHEMAS[kind], data)


async def test_a_failure_mid_stream_sends_error_then_response_failed(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/v1/responses", json={"model": "scripted", "input": "fail midway", "stream": True}
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds == [
        *STARTED,
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
        "response.failed",
    ]
    for kind, data in events:
        conforms(EVENT_SCHEMAS[kind], data)
    error, failed = events[-2][1], events[-1][1]["response"]
    assert error["code"] == "upstream_error" and error["message"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    stored = await gateway.client.get(f"/v1/responses/{failed['id']}")
    assert stored.status_code == 200
    conforms("Response", stored.json())
    assert (stored.json()["status"], stored.json()["output"]) == ("failed", [])
    assert stored.json()["error"]["message"] == error["message"]
    # Nothing to continue from: a failed response has no output.
    again = await gateway.client.post(
        "/v1/responses", json={"model": "scripted", "input": "and then", "previous_response_id": failed["id"]}
    )
    assert_error(again, 400, "previous_response_unfinished")


async def test_a_failure_before_the_model_begins_is_an_http_error_and_stores_nothing(
    gateway: Gateway,
) -> None:
    async with sdk(gateway) as client:
        with pytest.raises(openai.NotFoundError) as unknown_model:
            await client.responses.create(model="nope", input="hi", stream=True)
        with pytest.raises(openai.APIStatusError) as down:
            await client.responses.create(model="scripted", input="PROVIDER-DOWN")
    assert unknown_model.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert down.value.status_code == 502


async def test_max_output_tokens_reached_is_incomplete(gateway: Gateway) -> None:
    # "slow 3" ends with finish reason "length": the token limit, as OpenAI reports it.
    async with sdk(gateway) as client:
        response = await client.responses.create(model="scripted", input="slow 3", max_output_tokens=3)
        stream = await client.responses.create(
            model="scripted", input="slow 3", max_output_tokens=3, stream=True
        )
        events = [event async for event in stream]
    assert response.status == "incomplete" and response.output_text == "t0 t1 t2 "
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )
    assert response.output[0].status == "incomplete"  # type: ignore[union-attr]
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


async def test_retrieve_then_delete(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        created = await client.responses.create(model="scripted", input="keep me", instructions="Be kind.")
        retrieved = await client.responses.retrieve(created.id)
        assert retrieved.model_dump(exclude={"completed_at"}) == created.model_dump(exclude={"completed_at"})
        deleted = await gateway.client.delete(f"/v1/responses/{created.id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": created.id, "object": "response", "deleted": True}
        with pytest.raises(openai.NotFoundError) as gone:
            await client.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.input_items.list(created.id)
    assert gone.value.body["code"] == "response_not_found"  # type: ignore[index]
    conforms("ErrorResponse", gone.value.response.json())


async def test_previous_response_id_gives_the_model_the_whole_chain(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        first = await client.responses.create(
            model="scripted", input="my name is Ada", instructions="Be kind."
        )
        second = await client.responses.create(
            model="scripted", input="I live in Paris", previous_response_id=first.id, instructions="Be brief."
        )
        stream = await client.responses.create(
            model="scripted", input="who am I", previous_response_id=second.id, stream=True
        )
        third = [event async for event in stream][-1].response  # type: ignore[union-attr]
        listed = await client.responses.input_items.list(third.id)
        # Deleting a response in the middle cuts the chain there; the later ones keep their own turns.
        await client.responses.delete(second.id)
        fourth = await client.responses.create(
            model="scripted", input="still there", previous_response_id=third.id
        )
    assert second.previous_response_id == first.id and third.previous_response_id == second.id
    assert third.output_text == "echo: who am I" and fourth.output_text == "echo: still there"
    assert [item.content[0].text for item in listed.data] == ["who am I"]  # type: ignore[union-attr]
    calls = gateway.backend.calls
    # Earlier instructions are not carried over (as OpenAI documents); the turns are.
    assert [(m.role, m.content) for m in calls[1].request.messages] == [
        ("system", "Be brief."),
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "I live in Paris"),
    ]
    assert seen(gateway) == [
        ("user", "who am I"),
        ("assistant", "echo: who am I"),
        ("user", "still there"),
    ]
    assert [(m.role, m.content) for m in calls[2].request.messages] == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "I live in Paris"),
        ("assistant", "echo: I live in Paris"),
        ("user", "who am I"),
    ]


async def test_store_false_is_not_kept(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        response = await client.responses.create(model="scripted", input="forget me", store=False)
        stream = await client.responses.create(model="scripted", input="me too", store=False, stream=True)
        streamed = [event async for event in stream][-1].response  # type: ignore[union-attr]
        for unstored in (response, streamed):
            assert unstored.id.startswith("resp_") and unstored.store is False
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(unstored.id)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="scripted", input="go on", previous_response_id=response.id)
        # A stored response may be continued by an unstored one.
        kept = await client.responses.create(model="scripted", input="remember")
        continued = await client.responses.create(
            model="scripted", input="and this", previous_response_id=kept.id, store=False
        )
    assert response.output_text == "echo: forget me" and streamed.output_text == "echo: me too"
    assert refused.value.body == {  # OpenAI's answer to an unknown previous response, with our request id
        "message": f"Previous response with id {response.id!r} not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
        "request_id": refused.value.response.headers["x-request-id"],
    }
    assert continued.output_text == "echo: and this"
    assert seen(gateway)[:2] == [("user", "remember"), ("assistant", "echo: remember")]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            {"tools": [{"type": "web_search"}]},
            "tools",
            "web_search tools are not supported (function and file_search only)",
        ),
        ({"tools": [{"type": "function", "name": "no spaces"}]}, "tools.0.name", "should match pattern"),
        ({"tool_choice": "required"}, "tool_choice", 'tool_choice "required" needs function tools'),
        (
            {"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function", "name": "g"}},
            "tool_choice",
            "names function 'g', which is not in tools",
        ),
        (
            {"input": [{"type": "computer_call_output", "call_id": "c1", "output": {}}]},
            "input",
            "computer_call_output items are not supported (of tools, only functions)",
        ),
        (
            {"text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
            "text.format",
            "needs its name and schema",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
                ]
            },
            "input",
            "input_image content is not supported",
        ),
        ({"background": True}, "background", "background responses are not supported"),
        ({"truncation": "auto"}, "truncation", "truncation"),
        ({"max_output_tokens": "8"}, "max_output_tokens", "integer"),
        ({"metadata": {str(n): "v" for n in range(17)}}, "metadata", "at most 16 pairs"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "at most 64 characters"),
    ],
)
async def test_refused_fields_are_400_naming_the_field(
    gateway: Gateway, body: dict[str, Any], param: str, words: str
) -> None:
    async with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(**{"model": "scripted", "input": "hi", **body})
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_request",
    )
    assert words in error["message"], error["message"]
    conforms("ErrorResponse", refused.value.response.json())
    assert gateway.backend.calls == []


async def test_empty_tools_and_tuning_fields_are_accepted(gateway: Gateway) -> None:
    async with sdk(gateway) as client:
        response = await client.responses.create(
            model="scripted",
            input="plain",
            tools=[],
            tool_choice="auto",
            text={"format": {"type": "text"}},
            reasoning={"effort": "low"},
            user="someone",
            parallel_tool_calls=False,
        )
    assert response.output_text == "echo: plain" and response.parallel_tool_calls is False


async def test_a_client_leaving_mid_stream_stops_the_model_and_the_response_is_cancelled(
    gateway: Gateway,
) -> None:
    async with sdk(gateway) as client:
        stream = await client.responses.create(model="scripted", input="slow 40", stream=True)
        created = await anext(aiter(stream))
        assert created.type == "response.created"
        response_id = created.response.id
        async for event in stream:
            if event.type == "response.output_text.delta":
                break
        await stream.close()
        await eventually(lambda: gateway.backend.calls[-1].cancelled)
        assert gateway.backend.calls[-1].cancelled

        async def status() -> str:
            return (await client.responses.retrieve(response_id)).status or ""

        for _ in range(100):
            if await status() != "in_progress":
                break
            await asyncio.sleep(0.02)
        assert await status() == "cancelled"


async def _tenant_key(gateway: Gateway, project: str) -> str:
    created = await gateway.client.post(
        "/admin/v1/projects", json={"id": project, "name": f"Project {project}"}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    key = await gateway.client.post(
        "/admin/v1/api-keys", json={"name": "app", "project": project}, headers=ADMIN
    )
    assert key.status_code == 201, key.text
    secret: str = key.json()["key"]
    return secret


async def test_another_projects_response_is_not_found(database_url: str) -> None:
    async with scripted_mesh(
        database_url,
        generation_timeout_s=5,
        gateway_settings={"auth_enabled": True, "admin_token": ADMIN_TOKEN},
    ) as gateway:
        alpha = sdk(gateway, await _tenant_key(gateway, "alpha"))
        beta = sdk(gateway, await _tenant_key(gateway, "beta"))
        async with alpha, beta:
            mine = await alpha.responses.create(model="scripted", input="alpha's secret")
            for attempt in (
                beta.responses.retrieve(mine.id),
                beta.responses.delete(mine.id),
                beta.responses.input_items.list(mine.id),
            ):
                with pytest.raises(openai.NotFoundError) as hidden:
                    await attempt
                assert hidden.value.body["code"] == "response_not_found"  # type: ignore[index]
            with pytest.raises(openai.BadRequestError) as refused:
                await beta.responses.create(model="scripted", input="tell me", previous_response_id=mine.id)
            assert refused.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
            still = await alpha.responses.retrieve(mine.id)
            assert still.output_text == "echo: alpha's secret"
        anonymous = await gateway.client.get(f"/v1/responses/{mine.id}")
        assert anonymous.status_code == 401


async def test_a_chain_continues_after_the_mesh_restarts(database_url: str) -> None:
    """Stored responses live in the store's database: a new mesh on the same database continues them."""
    async with scripted_mesh(database_url, generation_timeout_s=5) as before, sdk(before) as client:
        first = await client.responses.create(model="scripted", input="my name is Ada")
        second = await client.responses.create(
            model="scripted", input="I like tea", previous_response_id=first.id
        )
    async with scripted_mesh(database_url, generation_timeout_s=5) as after, sdk(after) as client:
        third = await client.responses.create(
            model="scripted", input="who am I", previous_response_id=second.id
        )
        retrieved = await client.responses.retrieve(second.id)
        listed = await client.responses.input_items.list(first.id)
    assert third.output_text == "echo: who am I"
    assert seen(after) == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "I like tea"),
        ("assistant", "echo: I like tea"),
        ("user", "who am I"),
    ]
    assert (retrieved.output_text, retrieved.previous_response_id) == ("echo: I like tea", first.id)
    assert [item.content[0].text for item in listed.data] == ["my name is Ada"]  # type: ignore[union-attr]


async def test_a_stored_response_cannot_hold_a_nul_character(gateway: Gateway) -> None:
    """PostgreSQL cannot store it: refused at once (on every database), before the model runs."""
    response = await gateway.client.post("/v1/responses", json={"model": "scripted", "input": "a\x00b"})
    error = assert_error(response, 400, "invalid_generation_request")
    assert "NUL" in error["message"] and gateway.backend.calls == []
    unstored = await gateway.client.post(
        "/v1/responses", json={"model": "scripted", "input": "a\x00b", "store": False}
    )
    assert unstored.status_code == 200, unstored.text


async def test_the_openapi_document_describes_the_routes(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()
    paths = document["paths"]
    assert {"post"} <= set(paths["/v1/responses"])
    assert {"get", "delete"} <= set(paths["/v1/responses/{response_id}"])
    assert "get" in paths["/v1/responses/{response_id}/input_items"]
    created = paths["/v1/responses"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in created and "application/json" in created

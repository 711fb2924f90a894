"""The store's stored responses over gRPC, on SQLite and PostgreSQL: ids, finishing once, the chain
walk, input item pages, deletion and projects. These drive the StoreService directly, playing the
orchestrator's part; tests/gateway/test_responses.py runs the whole mesh through the OpenAI SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.tenancy import METADATA_KEY
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running

BETA = ((METADATA_KEY, "beta"),)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[store_pb2_grpc.StoreServiceStub]:
    server, port = create_store(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        yield store_pb2_grpc.StoreServiceStub(channel)


async def create(
    store: store_pb2_grpc.StoreServiceStub,
    *turns: tuple[str, str],
    previous: str = "",
    output: str = "answer",
    status: common_pb2.ResponseStatus = common_pb2.RESPONSE_STATUS_COMPLETED,
    metadata: tuple[tuple[str, str], ...] = (),
) -> store_pb2.StoredResponse:
    request = store_pb2.CreateStoredResponseRequest(
        previous_response_id=previous,
        status=status,
        model="scripted",
        input=[
            store_pb2.NewResponseItem(role=role, content=content)
            for role, content in turns or [("user", "hi")]
        ],
        output_text=output if status != common_pb2.RESPONSE_STATUS_IN_PROGRESS else "",
        finish_reason=common_pb2.FINISH_REASON_STOP,
        usage=common_pb2.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    return (await store.CreateStoredResponse(request, metadata=metadata)).response


async def test_a_response_is_stored_with_ids_given_by_the_store(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    created = await store.CreateStoredResponse(
        store_pb2.CreateStoredResponseRequest(
            status=common_pb2.RESPONSE_STATUS_INCOMPLETE,
            model="scripted",
            instructions="Be brief.",
            metadata={"ticket": "42"},
            params=store_pb2.ResponseParams(max_output_tokens=3, temperature=0.5),
            input=[
                store_pb2.NewResponseItem(role="developer", content="Rules."),
                store_pb2.NewResponseItem(role="user", content="hi"),
            ],
            output_text="t0 t1 t2",
            finish_reason=common_pb2.FINISH_REASON_LENGTH,
            usage=common_pb2.Usage(prompt_tokens=1, completion_tokens=3, total_tokens=4),
        )
    )
    stored = created.response
    assert stored.response_id.startswith("resp_") and stored.output_item_id.startswith("msg_")
    assert [(i.role, i.content) for i in stored.input] == [("developer", "Rules."), ("user", "hi")]
    assert all(i.item_id.startswith("msg_") for i in stored.input)
    assert stored.HasField("completed_at")
    got = (
        await store.GetStoredResponse(store_pb2.GetStoredResponseRequest(response_id=stored.response_id))
    ).response
    assert got.status == common_pb2.RESPONSE_STATUS_INCOMPLETE
    assert (got.instructions, dict(got.metadata), got.output_text) == (
        "Be brief.",
        {"ticket": "42"},
        "t0 t1 t2",
    )
    assert (got.params.max_output_tokens, got.params.temperature, got.params.HasField("top_p")) == (
        3,
        0.5,
        False,
    )
    assert (got.finish_reason, got.usage.total_tokens) == (common_pb2.FINISH_REASON_LENGTH, 4)
    assert list(got.input) == []  # the input is paged through ListResponseInputItems


async def test_an_in_progress_response_is_finished_once(store: store_pb2_grpc.StoreServiceStub) -> None:
    started = await create(store, status=common_pb2.RESPONSE_STATUS_IN_PROGRESS)
    assert not started.HasField("completed_at")
    finish = store_pb2.FinishStoredResponseRequest(
        response_id=started.response_id,
        status=common_pb2.RESPONSE_STATUS_FAILED,
        error=common_pb2.JobError(code="upstream_error", message="the model failed"),
    )
    finished = (await store.FinishStoredResponse(finish)).response
    assert finished.status == common_pb2.RESPONSE_STATUS_FAILED and finished.HasField("completed_at")
    assert (finished.error.code, finished.error.message) == ("upstream_error", "the model failed")
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await store.FinishStoredResponse(finish)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_code(again.value) == "response_not_in_progress"


async def test_the_chain_is_walked_oldest_first_until_a_response_is_gone(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    first = await create(store, ("user", "one"), output="1")
    second = await create(store, ("user", "two"), previous=first.response_id, output="2")
    third = await create(store, ("user", "three"), previous=second.response_id, output="3")
    chain = await store.GetResponseChain(store_pb2.GetResponseChainRequest(response_id=third.response_id))
    assert [(r.input[0].content, r.output_text) for r in chain.responses] == [
        ("one", "1"),
        ("two", "2"),
        ("three", "3"),
    ]
    await store.DeleteStoredResponse(store_pb2.DeleteStoredResponseRequest(response_id=second.response_id))
    cut = await store.GetResponseChain(store_pb2.GetResponseChainRequest(response_id=third.response_id))
    assert [r.response_id for r in cut.responses] == [third.response_id]
    assert cut.responses[0].previous_response_id == second.response_id  # still names the one it continued
    for missing in (
        store.GetResponseChain(store_pb2.GetResponseChainRequest(response_id=second.response_id)),
        store.GetStoredResponse(store_pb2.GetStoredResponseRequest(response_id=second.response_id)),
        store.DeleteStoredResponse(store_pb2.DeleteStoredResponseRequest(response_id=second.response_id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await missing
        assert (gone.value.code(), error_code(gone.value)) == (
            grpc.StatusCode.NOT_FOUND,
            "response_not_found",
        )


async def test_input_items_come_in_pages_in_either_order(store: store_pb2_grpc.StoreServiceStub) -> None:
    response = await create(store, *[("user" if n % 2 else "assistant", f"turn {n}") for n in range(5)])
    ids = [item.item_id for item in response.input]

    async def page(limit: int = 0, ascending: bool = False, after: str = "") -> tuple[list[str], bool]:
        answer = await store.ListResponseInputItems(
            store_pb2.ListResponseInputItemsRequest(
                response_id=response.response_id, limit=limit, ascending=ascending, after=after
            )
        )
        return [item.item_id for item in answer.items], answer.has_more

    assert await page() == (ids[::-1], False)
    assert await page(limit=2) == ([ids[4], ids[3]], True)
    assert await page(limit=2, after=ids[3]) == ([ids[2], ids[1]], True)
    assert await page(limit=2, ascending=True, after=ids[2]) == ([ids[3], ids[4]], False)
    for bad, code in (
        (page(limit=101), "invalid_store_request"),
        (page(after="msg_x"), "input_item_not_found"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await bad
        assert (refused.value.code(), error_code(refused.value)) == (grpc.StatusCode.INVALID_ARGUMENT, code)


async def test_another_projects_responses_are_not_found(store: store_pb2_grpc.StoreServiceStub) -> None:
    await store.CreateProject(store_pb2.CreateProjectRequest(id="beta", name="Beta"))
    ours = await create(store, ("user", "default's"))
    theirs = await create(store, ("user", "beta's"), metadata=BETA)
    for response_id, metadata in ((ours.response_id, BETA), (theirs.response_id, ())):
        for call in (
            store.GetStoredResponse(
                store_pb2.GetStoredResponseRequest(response_id=response_id), metadata=metadata
            ),
            store.GetResponseChain(
                store_pb2.GetResponseChainRequest(response_id=response_id), metadata=metadata
            ),
            store.ListResponseInputItems(
                store_pb2.ListResponseInputItemsRequest(response_id=response_id), metadata=metadata
            ),
            store.DeleteStoredResponse(
                store_pb2.DeleteStoredResponseRequest(response_id=response_id), metadata=metadata
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await call
            assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
    # A chain never crosses projects: beta's response naming ours as its previous one stops at itself.
    crossing = await create(store, ("user", "beta again"), previous=ours.response_id, metadata=BETA)
    chain = await store.GetResponseChain(
        store_pb2.GetResponseChainRequest(response_id=crossing.response_id), metadata=BETA
    )
    assert [r.response_id for r in chain.responses] == [crossing.response_id]
    got = await store.GetStoredResponse(
        store_pb2.GetStoredResponseRequest(response_id=theirs.response_id), metadata=BETA
    )
    assert got.response.response_id == theirs.response_id


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (
            store_pb2.CreateStoredResponseRequest(status=common_pb2.RESPONSE_STATUS_COMPLETED, model="m"),
            "input",
        ),
        (
            store_pb2.CreateStoredResponseRequest(
                status=common_pb2.RESPONSE_STATUS_FAILED,
                model="m",
                input=[store_pb2.NewResponseItem(role="user", content="x")],
            ),
            "status",
        ),
        (
            store_pb2.CreateStoredResponseRequest(
                status=common_pb2.RESPONSE_STATUS_COMPLETED,
                model="m",
                input=[store_pb2.NewResponseItem(role="robot", content="x")],
            ),
            "role",
        ),
        (
            store_pb2.CreateStoredResponseRequest(
                status=common_pb2.RESPONSE_STATUS_COMPLETED,
                model="m",
                input=[store_pb2.NewResponseItem(role="tool", content="x")],
            ),
            "names the call it answers",
        ),
        (
            store_pb2.CreateStoredResponseRequest(
                status=common_pb2.RESPONSE_STATUS_COMPLETED,
                model="m",
                input=[
                    store_pb2.NewResponseItem(
                        role="user", content="x", tool_calls=[common_pb2.ToolCall(id="c", name="f")]
                    )
                ],
            ),
            "only an assistant item carries function calls",
        ),
    ],
)
async def test_malformed_responses_are_refused(
    store: store_pb2_grpc.StoreServiceStub, request_: store_pb2.CreateStoredResponseRequest, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await store.CreateStoredResponse(request_)
    assert (refused.value.code(), error_code(refused.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid_store_request",
    )
    assert words in (refused.value.details() or "")

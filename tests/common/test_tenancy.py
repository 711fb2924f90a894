"""The project a call acts for, as mesh services read it from metadata: none named is the default
project; a malformed one is refused rather than read as the default (a call meant for one project
must never act in another)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.errors import InvalidProject
from services.common.tenancy import DEFAULT_PROJECT, METADATA_KEY, accept_project
from services.store.config import StoreSettings
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running


@pytest.mark.parametrize(
    ("named", "acts_for"), [(None, DEFAULT_PROJECT), ("", DEFAULT_PROJECT), ("acme-2", "acme-2")]
)
def test_a_project_id_or_none_is_accepted(named: str | None, acts_for: str) -> None:
    assert accept_project(named) == acts_for


@pytest.mark.parametrize("named", ["Acme", "acme corp", "-acme", "a" * 33, "acme/../other", "ümlaut"])
def test_a_malformed_project_is_refused_not_defaulted(named: str) -> None:
    with pytest.raises(InvalidProject) as refused:
        accept_project(named)
    assert refused.value.code == "invalid_project" and "is not a project id" in refused.value.message


@pytest.fixture
async def store_port(tmp_path: Path) -> AsyncIterator[int]:
    server, port = create_store(StoreSettings(port=0, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))
    async with running(server):
        yield port


async def test_a_service_refuses_a_call_naming_a_malformed_project(store_port: int) -> None:
    malformed = ((METADATA_KEY, "Not A Project"),)
    async with channel_to(store_port) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        await stub.CreateTemplate(store_pb2.CreateTemplateRequest(name="kept"))  # the default project's
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.ListTemplates(store_pb2.ListTemplatesRequest(), metadata=malformed)
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in stub.WatchJobs(store_pb2.WatchJobsRequest(), metadata=malformed):
                pass
        listed = await stub.ListTemplates(store_pb2.ListTemplatesRequest())
    for refused in (unary.value, streamed.value):
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_code(refused) == "invalid_project"
        assert "is not a project id" in (refused.details() or "")
    assert [t.name for t in listed.templates] == ["kept"]

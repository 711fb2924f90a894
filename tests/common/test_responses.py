"""The Responses API's shared rules: the status a finished generation gives its response, and ids."""

from __future__ import annotations

import pytest
from llmmesh.common.v1 import common_pb2

from services.common.enums import RESPONSE_STATUS_NAMES
from services.common.responses import MESSAGE_ROLES, new_item_id, new_response_id, status_of


@pytest.mark.parametrize(
    ("finish_reason", "status"),
    [
        (common_pb2.FINISH_REASON_STOP, "completed"),
        (common_pb2.FINISH_REASON_UNSPECIFIED, "completed"),
        (common_pb2.FINISH_REASON_LENGTH, "incomplete"),
        (common_pb2.FINISH_REASON_CONTENT_FILTER, "incomplete"),
        (common_pb2.FINISH_REASON_TOOL_CALLS, "completed"),
    ],
)
def test_a_result_cut_short_is_incomplete(finish_reason: common_pb2.FinishReason, status: str) -> None:
    assert RESPONSE_STATUS_NAMES[status_of(finish_reason)] == status


def test_ids_are_openais_shape_and_fresh() -> None:
    ids = {new_response_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("resp_") and len(i) <= 64 for i in ids)
    assert new_item_id().startswith("msg_")


def test_developer_is_a_system_turn() -> None:
    assert MESSAGE_ROLES["developer"] == MESSAGE_ROLES["system"] == common_pb2.ROLE_SYSTEM
    # "tool": a function_call_output item's turn
    assert MESSAGE_ROLES["tool"] == common_pb2.ROLE_TOOL
    assert set(MESSAGE_ROLES) == {"system", "developer", "user", "assistant", "tool"}

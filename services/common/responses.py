"""What the Responses API's objects share across services: their ids, the roles an input message may
name, and the status a finished generation gives its response. Defined once: the store gives stored
responses their ids, the orchestrator unstored ones, and both read a result's status the same way."""

from __future__ import annotations

import uuid

from llmmesh.common.v1 import common_pb2

RESPONSE_ID_PREFIX = "resp_"
ITEM_ID_PREFIX = "msg_"

# The roles an input item may have, and the turn each is for the model: OpenAI's "developer" is its
# newer name for system instructions; "tool" is a function_call_output item's (a function's result).
MESSAGE_ROLES: dict[str, common_pb2.Role] = {
    "system": common_pb2.ROLE_SYSTEM,
    "developer": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "tool": common_pb2.ROLE_TOOL,
}


def new_response_id() -> str:
    return f"{RESPONSE_ID_PREFIX}{uuid.uuid4().hex}"


def new_item_id() -> str:
    return f"{ITEM_ID_PREFIX}{uuid.uuid4().hex}"


def status_of(finish_reason: common_pb2.FinishReason) -> common_pb2.ResponseStatus:
    """A finished generation's response status: cut short by the token limit or a content filter is
    INCOMPLETE (as OpenAI reports it, with the reason), anything else COMPLETED."""
    if finish_reason in (common_pb2.FINISH_REASON_LENGTH, common_pb2.FINISH_REASON_CONTENT_FILTER):
        return common_pb2.RESPONSE_STATUS_INCOMPLETE
    return common_pb2.RESPONSE_STATUS_COMPLETED

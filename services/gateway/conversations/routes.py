"""Transport for /api/v1/conversations: a caller's stored conversations (see the chat `conversation_id`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from llmmesh.store.v1 import store_pb2

from services.gateway.calls import store
from services.gateway.conversations.protocol import Conversation
from services.gateway.errors import error_responses, request_id_of

router = APIRouter(prefix="/conversations", tags=["conversations"])


@router.get(
    "/{conversation_id}",
    response_model=Conversation,
    response_model_exclude_none=True,
    responses=error_responses(400, 404),
)
async def get_conversation(conversation_id: str, request: Request) -> Conversation:
    """The stored turns of one of the caller's project's conversations, oldest first."""
    answer = await store(request).get_conversation(
        store_pb2.GetConversationRequest(
            conversation_id=conversation_id,
        )
    )
    return Conversation.from_proto(answer.conversation, request_id_of(request))


@router.delete("/{conversation_id}", status_code=204, responses=error_responses(400, 404))
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    """Forget a conversation; the next turn with its id starts a new one."""
    await store(request).delete_conversation(
        store_pb2.DeleteConversationRequest(
            conversation_id=conversation_id,
        )
    )
    return Response(status_code=204)

"""Conversations the store keeps: a generation naming one gets its stored turns before the new ones,
and its new user and assistant turns are stored when it succeeds (a failed turn leaves no trace)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from llmmesh.v1 import common_pb2, inference_pb2, orchestrator_pb2, store_pb2

from services.common.errors import MeshError
from services.orchestrator.routing import Router, final_result
from services.orchestrator.store import StoreClient


class Conversations:
    """Runs generations through the router, with stored history when the spec names a conversation."""

    def __init__(self, router: Router, store: StoreClient) -> None:
        self._router = router
        self._store = store

    async def stream(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        caller_time_remaining: float | None = None,
        stream: bool = True,
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        if not spec.conversation_id:
            async for event in self._router.stream(spec, caller_time_remaining, stream):
                yield event
            return
        full = await self._with_history(spec)
        async for event in self._router.stream(full, caller_time_remaining, stream):
            if event.HasField("result"):
                # Stored before the client hears the turn ended, so its next turn sees this one.
                await self._remember(spec, event.result.text)
            yield event

    async def run(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> common_pb2.GenerationResult:
        return await final_result(self.stream(spec, caller_time_remaining, stream=False))

    async def _with_history(self, spec: orchestrator_pb2.GenerationSpec) -> orchestrator_pb2.GenerationSpec:
        """The spec with the stored turns placed after its system instructions and before its new turns."""
        try:
            answer = await self._store.call(
                "GetConversation",
                store_pb2.GetConversationRequest(
                    owner=spec.conversation_owner, conversation_id=spec.conversation_id
                ),
            )
            history = list(answer.conversation.messages)
        except MeshError as error:
            if error.status != grpc.StatusCode.NOT_FOUND:
                raise
            history = []
        full = orchestrator_pb2.GenerationSpec()
        full.CopyFrom(spec)
        system = [m for m in spec.messages if m.role == common_pb2.ROLE_SYSTEM]
        new = [m for m in spec.messages if m.role != common_pb2.ROLE_SYSTEM]
        del full.messages[:]
        full.messages.extend([*system, *history, *new])
        return full

    async def _remember(self, spec: orchestrator_pb2.GenerationSpec, reply: str) -> None:
        turns = [m for m in spec.messages if m.role != common_pb2.ROLE_SYSTEM]
        if spec.prompt:
            turns.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=spec.prompt))
        turns.append(common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, content=reply))
        await self._store.call(
            "AppendConversation",
            store_pb2.AppendConversationRequest(
                owner=spec.conversation_owner, conversation_id=spec.conversation_id, messages=turns
            ),
        )

"""The entry point of every generation: the router, with the history of a stored conversation when
the request names one (its stored turns go before the new ones, and its new user and assistant turns
are stored when it succeeds; a failed turn leaves no trace), or as a response of the Responses API
(services/orchestrator/responses.py) when it asks to be one."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import InvalidGenerationRequest, MeshError
from services.orchestrator.responses import Event, Responses
from services.orchestrator.routing import Router
from services.store.client import StoreClient


def _check_storable(spec: orchestrator_pb2.GenerationSpec) -> None:
    """Turns the store could not keep are refused before the model runs, not after it generated."""
    texts = [spec.prompt] + [m.content for m in spec.messages] + [m.tool_call_id for m in spec.messages]
    texts += [part for m in spec.messages for c in m.tool_calls for part in (c.id, c.name, c.arguments)]
    if any("\x00" in text for text in texts):
        raise InvalidGenerationRequest("a turn of a stored conversation cannot contain a NUL character")


class Generations:
    """Runs generations through the router, with stored history when the spec names a conversation,
    and as responses (stored, continuing a stored chain) when it asks to be one."""

    def __init__(self, router: Router, store: StoreClient) -> None:
        self._router = router
        self._store = store
        self._responses = Responses(router, store)

    async def stream(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        caller_time_remaining: float | None = None,
        one_shot: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """The router's events for the spec (see Router.stream), its conversation kept in the store;
        a response's ResponseInfo comes before them (see Responses.stream)."""
        if spec.HasField("response"):
            async with aclosing(self._responses.stream(spec, caller_time_remaining, one_shot)) as events:
                async for event in events:
                    yield event
            return
        if not spec.conversation_id:
            async for event in self._router.stream(spec, caller_time_remaining, one_shot):
                yield event
            return
        _check_storable(spec)
        full = await self._with_history(spec)
        async for event in self._router.stream(full, caller_time_remaining, one_shot):
            if event.HasField("result"):
                # Stored before the client hears the turn ended, so its next turn sees this one.
                await self._remember(spec, event.result)
            yield event

    async def run(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> orchestrator_pb2.RunGenerationResponse:
        """The whole result, with the response's identity when the spec asked for one."""
        answer = orchestrator_pb2.RunGenerationResponse()
        async with aclosing(self.stream(spec, caller_time_remaining, one_shot=True)) as events:
            async for event in events:
                if isinstance(event, orchestrator_pb2.ResponseInfo):
                    answer.response.CopyFrom(event)
                elif event.HasField("result"):
                    answer.result.CopyFrom(event.result)
        return answer

    async def _with_history(self, spec: orchestrator_pb2.GenerationSpec) -> orchestrator_pb2.GenerationSpec:
        """The spec with the stored turns placed after its system instructions and before its new turns."""
        try:
            answer = await self._store.get_conversation(
                store_pb2.GetConversationRequest(conversation_id=spec.conversation_id),
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

    async def _remember(
        self, spec: orchestrator_pb2.GenerationSpec, result: common_pb2.GenerationResult
    ) -> None:
        """The new turns and the reply (with the tools it called) join the stored conversation."""
        turns = [m for m in spec.messages if m.role != common_pb2.ROLE_SYSTEM]
        if spec.prompt:
            turns.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=spec.prompt))
        turns.append(
            common_pb2.ChatMessage(
                role=common_pb2.ROLE_ASSISTANT, content=result.text, tool_calls=result.tool_calls
            )
        )
        await self._store.append_conversation(
            store_pb2.AppendConversationRequest(conversation_id=spec.conversation_id, messages=turns),
        )


async def embeddings(
    router: Router, model: str, inputs: list[str]
) -> orchestrator_pb2.CreateEmbeddingsResponse:
    """The embedding model's vectors for the inputs, with their usage: what CreateEmbeddings answers
    and what a batch's embeddings line keeps."""
    response = await router.embed(model, inputs)
    tokens = response.prompt_tokens
    return orchestrator_pb2.CreateEmbeddingsResponse(
        embeddings=response.embeddings,
        usage=common_pb2.Usage(prompt_tokens=tokens, total_tokens=tokens),
        model=response.model,
    )

"""Generations that are responses of the Responses API: the chain a response continues is loaded from
the store and placed before its input, and the response is stored with its id when asked to be.

A unary response is stored once, when it has ended. A streamed one is stored as in progress once the
model has begun (so its id can go to the client before the first delta) and finished when the stream
ends: completed, incomplete, failed, or cancelled when the client left. A response that fails before
the model began leaves no trace, as a failed conversation turn does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.enums import ROLE_NAMES
from services.common.errors import InvalidGenerationRequest, MeshError, shown
from services.common.responses import MESSAGE_ROLES, new_item_id, new_response_id, status_of
from services.orchestrator.errors import PreviousResponseNotFound, PreviousResponseUnfinished
from services.orchestrator.routing import Router
from services.store.client import StoreClient

log = logging.getLogger("llmmesh.orchestrator.responses")

Event = inference_pb2.GenerateResponse | orchestrator_pb2.ResponseInfo
# A response another may continue: it ended with an output.
_CONTINUABLE = (common_pb2.RESPONSE_STATUS_COMPLETED, common_pb2.RESPONSE_STATUS_INCOMPLETE)


def _check(spec: orchestrator_pb2.GenerationSpec) -> None:
    if spec.conversation_id:
        raise InvalidGenerationRequest("a response cannot also name a stored conversation")
    if spec.raw:
        raise InvalidGenerationRequest("a response is a chat: it cannot be a raw prompt")
    roles = spec.response.message_roles
    if roles and (len(roles) != len(spec.messages) or any(r not in MESSAGE_ROLES for r in roles)):
        raise InvalidGenerationRequest(
            "message_roles names one role of user, assistant, system, developer or tool per message"
        )
    if spec.response.store and (
        "\x00" in spec.system or "\x00" in spec.prompt or any("\x00" in m.content for m in spec.messages)
    ):
        raise InvalidGenerationRequest("a stored response cannot contain a NUL character")


def _input(spec: orchestrator_pb2.GenerationSpec) -> list[store_pb2.NewResponseItem]:
    """The response's input as the client sent it: its messages (with the roles it named), then the prompt."""
    roles = list(spec.response.message_roles) or [ROLE_NAMES[m.role] for m in spec.messages]
    items = [
        store_pb2.NewResponseItem(
            role=role, content=m.content, tool_calls=m.tool_calls, tool_call_id=m.tool_call_id
        )
        for role, m in zip(roles, spec.messages, strict=True)
    ]
    if spec.prompt:
        items.append(store_pb2.NewResponseItem(role="user", content=spec.prompt))
    return items


def _turns(response: store_pb2.StoredResponse) -> list[common_pb2.ChatMessage]:
    """What a stored response adds to the chain: its input, then its output (text and function calls)."""
    turns = [
        common_pb2.ChatMessage(
            role=MESSAGE_ROLES[i.role],
            content=i.content,
            tool_calls=i.tool_calls,
            tool_call_id=i.tool_call_id,
        )
        for i in response.input
    ]
    if response.status in _CONTINUABLE:
        turns.append(
            common_pb2.ChatMessage(
                role=common_pb2.ROLE_ASSISTANT,
                content=response.output_text,
                tool_calls=response.output_tool_calls,
            )
        )
    return turns


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


class Responses:
    """Runs response generations through the router, continuing and storing them in the store."""

    def __init__(self, router: Router, store: StoreClient) -> None:
        self._router = router
        self._store = store
        # Responses being marked cancelled after their client left (kept until the store answers).
        self._cancelling: set[asyncio.Task[None]] = set()

    async def stream(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        caller_time_remaining: float | None = None,
        one_shot: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """The router's events, after the ResponseInfo: before the first delta when streamed, with
        the result when `one_shot` (the caller wants only the result)."""
        _check(spec)
        model = self._router.resolve(spec.model).name
        full = await self._with_chain(spec)
        info: orchestrator_pb2.ResponseInfo | None = None
        ended = False
        try:
            async with aclosing(self._router.stream(full, caller_time_remaining, one_shot)) as events:
                async for event in events:
                    if event.HasField("result"):
                        unannounced = info is None  # one_shot, or a stream whose result came first
                        info = await self._ended(spec, model, info, event.result)
                        ended = True
                        if unannounced:
                            yield info
                    elif info is None and not one_shot:
                        # Stored as in progress only for a streamed client, who sees its id before
                        # the text; a one-shot response is stored once, when it has ended.
                        info = await self._begun(spec, model)
                        yield info
                    yield event
        except MeshError as error:
            if info is not None and not ended and spec.response.store:
                await self._abandon(info, common_pb2.RESPONSE_STATUS_FAILED, error)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            if info is not None and not ended and spec.response.store:
                # The call is being torn down: the store is told from a task of its own.
                task = asyncio.create_task(self._abandon(info, common_pb2.RESPONSE_STATUS_CANCELLED))
                self._cancelling.add(task)
                task.add_done_callback(self._cancelling.discard)
            raise

    async def _with_chain(self, spec: orchestrator_pb2.GenerationSpec) -> orchestrator_pb2.GenerationSpec:
        """The spec with the chain's turns after its instructions and before its input."""
        previous = spec.response.previous_response_id
        if not previous:
            return spec
        try:
            chain = await self._store.get_response_chain(
                store_pb2.GetResponseChainRequest(response_id=previous)
            )
        except MeshError as error:
            if error.status != grpc.StatusCode.NOT_FOUND:
                raise
            raise PreviousResponseNotFound(
                f"Previous response with id {shown(previous)} not found."
            ) from error
        last = chain.responses[-1]
        if last.status not in _CONTINUABLE:
            raise PreviousResponseUnfinished(
                f"previous response {shown(previous)} has no output to continue from (it did not complete)"
            )
        full = orchestrator_pb2.GenerationSpec()
        full.CopyFrom(spec)
        del full.messages[:]
        full.messages.extend([turn for response in chain.responses for turn in _turns(response)])
        full.messages.extend(spec.messages)
        return full

    def _new(self, spec: orchestrator_pb2.GenerationSpec) -> store_pb2.CreateStoredResponseRequest:
        params = store_pb2.ResponseParams()
        if spec.params.max_tokens:
            params.max_output_tokens = spec.params.max_tokens
        for name in ("temperature", "top_p"):
            if spec.params.HasField(name):
                setattr(params, name, getattr(spec.params, name))
        return store_pb2.CreateStoredResponseRequest(
            previous_response_id=spec.response.previous_response_id,
            model=spec.model,
            instructions=spec.system or None,
            metadata=spec.response.metadata,
            params=params,
            input=_input(spec),
        )

    async def _store_new(
        self, request: store_pb2.CreateStoredResponseRequest, model: str
    ) -> orchestrator_pb2.ResponseInfo:
        request.model = model
        stored = (await self._store.create_stored_response(request)).response
        return orchestrator_pb2.ResponseInfo(
            response_id=stored.response_id,
            created_at=stored.created_at,
            output_item_id=stored.output_item_id,
            model=model,
        )

    async def _begun(
        self, spec: orchestrator_pb2.GenerationSpec, model: str
    ) -> orchestrator_pb2.ResponseInfo:
        """A streamed response's identity, once the model has begun: stored as in progress if asked."""
        if not spec.response.store:
            return orchestrator_pb2.ResponseInfo(
                response_id=new_response_id(), created_at=_now(), output_item_id=new_item_id(), model=model
            )
        request = self._new(spec)
        request.status = common_pb2.RESPONSE_STATUS_IN_PROGRESS
        return await self._store_new(request, model)

    async def _ended(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        model: str,
        info: orchestrator_pb2.ResponseInfo | None,
        result: common_pb2.GenerationResult,
    ) -> orchestrator_pb2.ResponseInfo:
        """Store the finished response (before the client hears it ended, so it can continue it at once)."""
        status = status_of(result.finish_reason)
        if info is not None:
            if spec.response.store:
                await self._store.finish_stored_response(
                    store_pb2.FinishStoredResponseRequest(
                        response_id=info.response_id,
                        status=status,
                        output_text=result.text,
                        finish_reason=result.finish_reason,
                        usage=result.usage,
                        output_tool_calls=result.tool_calls,
                    )
                )
            return info
        if not spec.response.store:
            return await self._begun(spec, model)
        request = self._new(spec)
        request.status = status
        request.output_text = result.text
        request.finish_reason = result.finish_reason
        request.usage.CopyFrom(result.usage)
        request.output_tool_calls.extend(result.tool_calls)
        return await self._store_new(request, model)

    async def _abandon(
        self,
        info: orchestrator_pb2.ResponseInfo,
        status: common_pb2.ResponseStatus,
        error: MeshError | None = None,
    ) -> None:
        """Mark a stored response that will not finish; the store being down must not hide why."""
        request = store_pb2.FinishStoredResponseRequest(response_id=info.response_id, status=status)
        if error is not None:
            request.error.CopyFrom(common_pb2.JobError(code=error.code, message=error.message))
        try:
            await self._store.finish_stored_response(request)
        except MeshError as failure:
            log.warning(
                "could not mark a response that did not finish",
                extra={"response_id": info.response_id, "code": failure.code},
            )

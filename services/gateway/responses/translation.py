"""The Responses API in the mesh's terms and back: a request becomes a GenerationSpec with response
options (the orchestrator continues and stores it), and a result, a stored response or a stream's
messages become OpenAI's response objects and stream events."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2
from sse_starlette import ServerSentEvent

from services.common.enums import FINISH_REASON_NAMES, RESPONSE_STATUS_NAMES
from services.common.errors import MeshError
from services.common.responses import MESSAGE_ROLES, status_of
from services.gateway.auth.admission import charge
from services.gateway.responses.protocol import (
    CreateResponseRequest,
    IncompleteDetails,
    InputMessageItem,
    InputText,
    InputTokensDetails,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
)

# OpenAI's code for a response that failed in the model's service (its codes name its own causes).
FAILED_CODE = "server_error"
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def generation_spec(body: CreateResponseRequest) -> orchestrator_pb2.GenerationSpec:
    """The request as a generation: instructions as the system turn, input items as messages."""
    messages = body.messages()
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model or "",
        system=body.instructions or "",
        messages=[common_pb2.ChatMessage(role=MESSAGE_ROLES[m.role], content=m.text()) for m in messages],
        params=common_pb2.SamplingParams(
            max_tokens=body.max_output_tokens or 0, temperature=body.temperature, top_p=body.top_p
        ),
        response=orchestrator_pb2.ResponseOptions(
            store=body.store,
            previous_response_id=body.previous_response_id or "",
            metadata=body.metadata or {},
            message_roles=[m.role for m in messages],
        ),
    )
    search = body.file_search()
    if search is not None:
        spec.knowledge.knowledge_base_ids.extend(search["vector_store_ids"])
        spec.knowledge.top_k = int(search.get("max_num_results") or 5)
        if search.get("filters"):
            spec.knowledge.filter_json = json.dumps(search["filters"])
    return spec


def _seconds(stamp: Timestamp) -> int:
    return int(stamp.seconds)


def _usage(usage: common_pb2.Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=usage.cached_tokens),
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _citations(text: str, sources: Sequence[common_pb2.KnowledgeHit]) -> list[dict[str, Any]]:
    """OpenAI's file_citation annotations for the sources the prompt was given, [1] first."""
    return [
        {
            "type": "file_citation",
            "file_id": hit.file_id or hit.document_id,
            "filename": hit.title,
            "index": len(text),
        }
        for hit in sources
    ]


def _output(
    item_id: str, text: str, status: ResponseStatus, sources: Sequence[common_pb2.KnowledgeHit] = ()
) -> list[OutputMessage]:
    item_status = "incomplete" if status == "incomplete" else "completed"
    content = OutputText(text=text, annotations=_citations(text, sources))
    return [OutputMessage(id=item_id, status=item_status, content=[content])]


def _incomplete(finish_reason: common_pb2.FinishReason) -> IncompleteDetails | None:
    reason = _INCOMPLETE_REASONS.get(FINISH_REASON_NAMES.get(finish_reason, ""))
    return IncompleteDetails(reason=reason) if reason else None


class Fresh:
    """A response being created: what the request said and what the orchestrator named it."""

    def __init__(self, body: CreateResponseRequest, info: orchestrator_pb2.ResponseInfo) -> None:
        self.body = body
        self.info = info

    def object(
        self,
        status: ResponseStatus,
        result: common_pb2.GenerationResult | None = None,
        error: MeshError | None = None,
    ) -> ResponseObject:
        body = self.body
        ended = result is not None or error is not None
        return ResponseObject(
            id=self.info.response_id,
            created_at=_seconds(self.info.created_at),
            status=status,
            completed_at=int(time.time()) if ended else None,
            error=ResponseError(code=FAILED_CODE, message=error.message) if error is not None else None,
            incomplete_details=_incomplete(result.finish_reason) if result is not None else None,
            instructions=body.instructions,
            max_output_tokens=body.max_output_tokens,
            model=self.info.model,
            output=_output(self.info.output_item_id, result.text, status, result.sources)
            if result is not None
            else [],
            parallel_tool_calls=body.parallel_tool_calls is not False,
            previous_response_id=body.previous_response_id,
            store=body.store,
            temperature=body.temperature,
            tool_choice="none" if body.tool_choice == "none" else "auto",
            tools=body.tools or [],
            top_p=body.top_p,
            usage=_usage(result.usage) if result is not None else None,
            metadata=body.metadata or {},
        )

    def finished(self, result: common_pb2.GenerationResult) -> ResponseObject:
        return self.object(RESPONSE_STATUS_NAMES[status_of(result.finish_reason)], result)  # type: ignore[arg-type]


def stored_object(stored: store_pb2.StoredResponse) -> ResponseObject:
    """A stored response as retrieve returns it."""
    status: ResponseStatus = RESPONSE_STATUS_NAMES[stored.status]  # type: ignore[assignment]
    has_output = status in ("completed", "incomplete")
    params = stored.params
    return ResponseObject(
        id=stored.response_id,
        created_at=_seconds(stored.created_at),
        status=status,
        completed_at=_seconds(stored.completed_at) if stored.HasField("completed_at") else None,
        error=ResponseError(code=FAILED_CODE, message=stored.error.message)
        if stored.HasField("error")
        else None,
        incomplete_details=_incomplete(stored.finish_reason) if status == "incomplete" else None,
        instructions=stored.instructions if stored.HasField("instructions") else None,
        max_output_tokens=params.max_output_tokens if params.HasField("max_output_tokens") else None,
        model=stored.model,
        output=_output(stored.output_item_id, stored.output_text, status) if has_output else [],
        previous_response_id=stored.previous_response_id or None,
        store=True,
        temperature=params.temperature if params.HasField("temperature") else None,
        top_p=params.top_p if params.HasField("top_p") else None,
        usage=_usage(stored.usage) if has_output else None,
        metadata=dict(stored.metadata),
    )


def input_item(item: store_pb2.ResponseItem) -> InputMessageItem | OutputMessage:
    """A stored input message as the input items list shows it (an assistant's as an output message)."""
    if item.role == "assistant":
        return OutputMessage(id=item.item_id, status="completed", content=[OutputText(text=item.content)])
    return InputMessageItem(id=item.item_id, role=item.role, content=[InputText(text=item.content)])


class StreamEvents:
    """The SSE events of one streamed response, numbered in order (`sequence_number`), as OpenAI
    sends them: created, in_progress, the output item and its text part added, a delta per piece of
    text, then the text, part and item done and the response completed (or incomplete). A failure
    after the start sends an `error` event, then `response.failed`."""

    def __init__(self, request: Request, body: CreateResponseRequest) -> None:
        self.request = request
        self.body = body
        self.sequence = 0
        self.fresh: Fresh | None = None

    def event(self, kind: str, **data: Any) -> ServerSentEvent:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return ServerSentEvent(json.dumps(payload, separators=(",", ":")), event=kind, sep="\n")

    def _where(self) -> dict[str, Any]:
        assert self.fresh is not None
        return {"item_id": self.fresh.info.output_item_id, "output_index": 0, "content_index": 0}

    def render(self, message: orchestrator_pb2.StreamGenerationResponse) -> list[ServerSentEvent]:
        if message.HasField("response"):
            self.fresh = Fresh(self.body, message.response)
            started = self.fresh.object("in_progress").model_dump(mode="json")
            item = OutputMessage(id=message.response.output_item_id, status="in_progress", content=[])
            return [
                self.event("response.created", response=started),
                self.event("response.in_progress", response=started),
                self.event("response.output_item.added", output_index=0, item=item.model_dump(mode="json")),
                self.event(
                    "response.content_part.added",
                    **self._where(),
                    part=OutputText(text="").model_dump(mode="json"),
                ),
            ]
        if message.HasField("delta"):
            if not message.delta.text:
                return []
            return [
                self.event(
                    "response.output_text.delta", **self._where(), delta=message.delta.text, logprobs=[]
                )
            ]
        return self._finished(message.result)

    def _finished(self, result: common_pb2.GenerationResult) -> list[ServerSentEvent]:
        assert self.fresh is not None
        charge(self.request, result.usage)
        response = self.fresh.finished(result)
        [item] = response.output
        final = "response.incomplete" if response.status == "incomplete" else "response.completed"
        return [
            self.event("response.output_text.done", **self._where(), text=result.text, logprobs=[]),
            self.event(
                "response.content_part.done", **self._where(), part=item.content[0].model_dump(mode="json")
            ),
            self.event("response.output_item.done", output_index=0, item=item.model_dump(mode="json")),
            self.event(final, response=response.model_dump(mode="json")),
        ]

    def render_error(self, error: MeshError, request_id: str) -> list[ServerSentEvent]:
        events = [self.event("error", code=error.code, message=error.message, param=None)]
        if self.fresh is not None:
            failed = self.fresh.object("failed", error=error)
            events.append(self.event("response.failed", response=failed.model_dump(mode="json")))
        return events

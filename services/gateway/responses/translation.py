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
from services.gateway.openai.protocol import constraint_of, tooling_of
from services.gateway.responses.protocol import (
    CreateResponseRequest,
    FileSearchCallItem,
    FileSearchResult,
    FunctionCallInput,
    FunctionCallItem,
    FunctionCallOutputInput,
    FunctionCallOutputItem,
    IncompleteDetails,
    InputItem,
    InputMessageItem,
    InputText,
    InputTokensDetails,
    NamedFunctionChoice,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseError,
    ResponseObject,
    ResponseStatus,
    ResponseUsage,
    TextConfig,
)

# OpenAI's code for a response that failed in the model's service (its codes name its own causes).
FAILED_CODE = "server_error"
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _turn(item: InputItem) -> tuple[str, common_pb2.ChatMessage]:
    """An input item as a turn for the model, with the role it is stored under."""
    if isinstance(item, FunctionCallInput):
        call = common_pb2.ToolCall(id=item.call_id, name=item.name, arguments=item.arguments)
        return "assistant", common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, tool_calls=[call])
    if isinstance(item, FunctionCallOutputInput):
        message = common_pb2.ChatMessage(
            role=common_pb2.ROLE_TOOL, content=item.text(), tool_call_id=item.call_id
        )
        return "tool", message
    return item.role, common_pb2.ChatMessage(role=MESSAGE_ROLES[item.role], content=item.text())


def generation_spec(body: CreateResponseRequest) -> orchestrator_pb2.GenerationSpec:
    """The request as a generation: instructions as the system turn, input items as turns (a
    function call as an assistant's, its output as a tool's), function tools and text.format as the
    chat door takes them."""
    roles, messages = zip(*(_turn(item) for item in body.items()), strict=True)
    spec = orchestrator_pb2.GenerationSpec(
        model=body.model or "",
        system=body.instructions or "",
        messages=messages,
        params=common_pb2.SamplingParams(
            max_tokens=body.max_output_tokens or 0, temperature=body.temperature, top_p=body.top_p
        ),
        response=orchestrator_pb2.ResponseOptions(
            store=body.store,
            previous_response_id=body.previous_response_id or "",
            metadata=body.metadata or {},
            message_roles=roles,
        ),
    )
    choice = body.tool_choice
    named = choice.name if isinstance(choice, NamedFunctionChoice) else None
    mode = None if isinstance(choice, NamedFunctionChoice) else choice
    tooling = tooling_of(body.functions(), mode, named, body.parallel_tool_calls)
    if tooling is not None:
        spec.tooling.CopyFrom(tooling)
    text_format = body.text.format if body.text is not None else None
    if text_format is not None and (constraint := constraint_of(text_format.type, text_format.json_schema())):
        spec.constraint.CopyFrom(constraint)
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


def call_item_id(output_item_id: str, index: int) -> str:
    """The id of a response's `index`th function call item, made from its output message's id so
    that the stored response reads back with the ids it was created with."""
    return f"fc_{output_item_id.partition('_')[2]}_{index}"


def search_item_id(output_item_id: str) -> str:
    """The id of a response's file_search_call item, made from its output message's id."""
    return f"fs_{output_item_id.partition('_')[2]}"


def search_item(
    body: CreateResponseRequest, output_item_id: str, sources: Sequence[common_pb2.KnowledgeHit] | None
) -> FileSearchCallItem:
    """The file_search_call item of a response (in progress until its sources are known)."""
    results = None
    if sources is not None and body.wants_search_results():
        results = [
            FileSearchResult(
                file_id=hit.file_id or hit.document_id,
                filename=hit.title,
                text=hit.text,
                score=min(1.0, max(0.0, hit.score)),
                attributes=json.loads(hit.metadata_json or "{}"),
            )
            for hit in sources
        ]
    return FileSearchCallItem(
        id=search_item_id(output_item_id),
        status="completed" if sources is not None else "in_progress",
        queries=[body.search_query()],
        results=results,
    )


def _output(
    item_id: str,
    text: str,
    status: ResponseStatus,
    sources: Sequence[common_pb2.KnowledgeHit] = (),
    calls: Sequence[common_pb2.ToolCall] = (),
    search: FileSearchCallItem | None = None,
) -> list[OutputItem]:
    """A response's output items: the file search it ran (if any), its message (left out when the
    model only called functions), then one function_call item per call."""
    item_status = "incomplete" if status == "incomplete" else "completed"
    output: list[OutputItem] = [search] if search is not None else []
    if text or not calls:
        content = OutputText(text=text, annotations=_citations(text, sources))
        output.append(OutputMessage(id=item_id, status=item_status, content=[content]))
    output += [
        FunctionCallItem(id=call_item_id(item_id, index), call_id=c.id, name=c.name, arguments=c.arguments)
        for index, c in enumerate(calls)
    ]
    return output


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
            output=_output(
                self.info.output_item_id,
                result.text,
                status,
                result.sources,
                result.tool_calls,
                search_item(body, self.info.output_item_id, result.sources) if body.file_search() else None,
            )
            if result is not None
            else [],
            parallel_tool_calls=body.parallel_tool_calls is not False,
            previous_response_id=body.previous_response_id,
            store=body.store,
            temperature=body.temperature,
            text=body.text or TextConfig(),
            tool_choice=body.tool_choice or "auto",
            tools=body.echoed_tools(),
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
        output=_output(stored.output_item_id, stored.output_text, status, calls=stored.output_tool_calls)
        if has_output
        else [],
        previous_response_id=stored.previous_response_id or None,
        store=True,
        temperature=params.temperature if params.HasField("temperature") else None,
        top_p=params.top_p if params.HasField("top_p") else None,
        usage=_usage(stored.usage) if has_output else None,
        metadata=dict(stored.metadata),
    )


def input_item(
    item: store_pb2.ResponseItem,
) -> InputMessageItem | OutputMessage | FunctionCallItem | FunctionCallOutputItem:
    """A stored input item as the input items list shows it (an assistant's message as an output
    message, its function call as a function_call item, a tool's result as function_call_output)."""
    if item.tool_calls:
        [call] = item.tool_calls[:1]
        return FunctionCallItem(id=item.item_id, call_id=call.id, name=call.name, arguments=call.arguments)
    if item.role == "tool":
        return FunctionCallOutputItem(id=item.item_id, call_id=item.tool_call_id, output=item.content)
    if item.role == "assistant":
        return OutputMessage(id=item.item_id, status="completed", content=[OutputText(text=item.content)])
    return InputMessageItem(id=item.item_id, role=item.role, content=[InputText(text=item.content)])


class StreamEvents:
    """The SSE events of one streamed response, numbered in order (`sequence_number`), as OpenAI
    sends them: created and in_progress; for text, the message item and its text part added, a delta
    per piece, then the text, part and item done; for each function call, its item added, its
    arguments' deltas, then arguments and item done; last the response completed (or incomplete).
    Items open as their first piece arrives, numbered in that order. A failure after the start sends
    an `error` event, then `response.failed`."""

    def __init__(self, request: Request, body: CreateResponseRequest) -> None:
        self.request = request
        self.body = body
        self.sequence = 0
        self.fresh: Fresh | None = None
        # The output index of the message item, once open; of each call (by its index), once open.
        self.message_index: int | None = None
        self.call_indexes: dict[int, int] = {}
        # Whether a file_search_call item was opened (always the first, output index 0).
        self.searching = False
        self.arguments: dict[int, list[str]] = {}

    def event(self, kind: str, **data: Any) -> ServerSentEvent:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return ServerSentEvent(json.dumps(payload, separators=(",", ":")), event=kind, sep="\n")

    @property
    def _opened(self) -> int:
        return self.searching + (self.message_index is not None) + len(self.call_indexes)

    def _where(self) -> dict[str, Any]:
        assert self.fresh is not None and self.message_index is not None
        return {
            "item_id": self.fresh.info.output_item_id,
            "output_index": self.message_index,
            "content_index": 0,
        }

    def _open_message(self) -> list[ServerSentEvent]:
        assert self.fresh is not None
        self.message_index = self._opened
        item = OutputMessage(id=self.fresh.info.output_item_id, status="in_progress", content=[])
        return [
            self.event(
                "response.output_item.added",
                output_index=self.message_index,
                item=item.model_dump(mode="json"),
            ),
            self.event(
                "response.content_part.added",
                **self._where(),
                part=OutputText(text="").model_dump(mode="json"),
            ),
        ]

    def _call_id(self, index: int) -> str:
        assert self.fresh is not None
        return call_item_id(self.fresh.info.output_item_id, index)

    def _tool_call(self, piece: common_pb2.ToolCallDelta) -> list[ServerSentEvent]:
        events = []
        if piece.index not in self.call_indexes:
            self.call_indexes[piece.index] = self._opened
            self.arguments[piece.index] = []
            item = FunctionCallItem(
                id=self._call_id(piece.index),
                call_id=piece.id,
                name=piece.name,
                arguments="",
                status="in_progress",
            )
            events.append(
                self.event(
                    "response.output_item.added",
                    output_index=self.call_indexes[piece.index],
                    item=item.model_dump(mode="json"),
                )
            )
        if piece.arguments:
            self.arguments[piece.index].append(piece.arguments)
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=self._call_id(piece.index),
                    output_index=self.call_indexes[piece.index],
                    delta=piece.arguments,
                )
            )
        return events

    def render(self, message: orchestrator_pb2.StreamGenerationResponse) -> list[ServerSentEvent]:
        if message.HasField("response"):
            self.fresh = Fresh(self.body, message.response)
            started = self.fresh.object("in_progress").model_dump(mode="json")
            events = [
                self.event("response.created", response=started),
                self.event("response.in_progress", response=started),
            ]
            if self.body.file_search():
                self.searching = True
                item = search_item(self.body, message.response.output_item_id, None)
                where = {"output_index": 0, "item_id": item.id}
                events += [
                    self.event(
                        "response.output_item.added", output_index=0, item=item.model_dump(mode="json")
                    ),
                    self.event("response.file_search_call.in_progress", **where),
                    self.event("response.file_search_call.searching", **where),
                ]
            return events
        if message.HasField("tool_call"):
            return self._tool_call(message.tool_call)
        if message.HasField("delta"):
            if not message.delta.text:
                return []
            opening = self._open_message() if self.message_index is None else []
            return [
                *opening,
                self.event(
                    "response.output_text.delta", **self._where(), delta=message.delta.text, logprobs=[]
                ),
            ]
        return self._finished(message.result)

    def _finished(self, result: common_pb2.GenerationResult) -> list[ServerSentEvent]:
        assert self.fresh is not None
        charge(self.request, result.usage)
        response = self.fresh.finished(result)
        events: list[ServerSentEvent] = []
        search = next((item for item in response.output if isinstance(item, FileSearchCallItem)), None)
        if search is not None:
            events += [
                self.event("response.file_search_call.completed", output_index=0, item_id=search.id),
                self.event("response.output_item.done", output_index=0, item=search.model_dump(mode="json")),
            ]
        message = next((item for item in response.output if isinstance(item, OutputMessage)), None)
        if message is not None:
            if self.message_index is None:  # a result with text that no delta carried
                events += self._open_message()
                events.append(
                    self.event("response.output_text.delta", **self._where(), delta=result.text, logprobs=[])
                )
            events += [
                self.event("response.output_text.done", **self._where(), text=result.text, logprobs=[]),
                self.event(
                    "response.content_part.done",
                    **self._where(),
                    part=message.content[0].model_dump(mode="json"),
                ),
                self.event(
                    "response.output_item.done",
                    output_index=self.message_index,
                    item=message.model_dump(mode="json"),
                ),
            ]
        for index, call in enumerate(result.tool_calls):
            if index not in self.call_indexes:  # a call that no piece announced
                events += self._tool_call(common_pb2.ToolCallDelta(index=index, id=call.id, name=call.name))
            item = FunctionCallItem(
                id=self._call_id(index), call_id=call.id, name=call.name, arguments=call.arguments
            )
            where = {"item_id": item.id, "output_index": self.call_indexes[index]}
            events += [
                self.event(
                    "response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments
                ),
                self.event(
                    "response.output_item.done",
                    output_index=where["output_index"],
                    item=item.model_dump(mode="json"),
                ),
            ]
        # The final object lists its items at the output indexes the stream gave them (text that
        # followed a call comes after it), so a client can match every event to its item.
        streamed = {self._call_id(index): at for index, at in self.call_indexes.items()}
        if message is not None:
            assert self.message_index is not None  # opened above when no delta opened it
            streamed[message.id] = self.message_index
        if search is not None:
            streamed[search.id] = 0
        response.output.sort(key=lambda item: streamed[item.id])
        final = "response.incomplete" if response.status == "incomplete" else "response.completed"
        events.append(self.event(final, response=response.model_dump(mode="json")))
        return events

    def render_error(self, error: MeshError, request_id: str) -> list[ServerSentEvent]:
        events = [self.event("error", code=error.code, message=error.message, param=None)]
        if self.fresh is not None:
            failed = self.fresh.object("failed", error=error)
            events.append(self.event("response.failed", response=failed.model_dump(mode="json")))
        return events

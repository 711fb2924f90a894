"""What every provider backend shares: the API key from the environment, and one request shape."""

from __future__ import annotations

import abc
import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from services.common.config import ConfigError
from services.common.registry import CloudConfig, resolve_secret
from services.inference.backends.base import (
    Backend,
    Delta,
    Event,
    Finished,
    FinishReason,
    GenerationInput,
    Message,
    OutputConstraint,
    Tool,
    ToolCall,
    ToolCallDelta,
    Tooling,
)
from services.inference.errors import UnsupportedOutputControl

ClientT = TypeVar("ClientT")


class CloudBackend(Backend, Generic[ClientT]):
    """A model behind a provider's API: nothing to load but a client; the provider keeps it warm."""

    provider = "cloud"
    # Every provider API the mesh speaks has function calling, and takes a JSON schema for the
    # answer (natively, or as the arguments of a tool it must call: see OutputTool); none takes a
    # grammar.
    calls_tools = True
    constrains_output = True

    def check_output_controls(self, request: GenerationInput) -> None:
        if request.constraint is not None and request.constraint.kind == "grammar":
            raise UnsupportedOutputControl(
                f"model {self.name} ({self.kind}) cannot constrain its output to a grammar"
            )
        super().check_output_controls(request)

    def __init__(self, name: str, config: CloudConfig) -> None:
        super().__init__(name, config)
        self.config: CloudConfig = config
        self.api_key = self._api_key()
        self._client: ClientT | None = None

    @abc.abstractmethod
    def _connect(self) -> ClientT:
        """The provider's SDK client. Retries are the orchestrator's (one policy across tiers), so
        every client is built to make a single attempt per call."""

    @abc.abstractmethod
    async def _disconnect(self, client: ClientT) -> None:
        """Close the client's connections."""

    async def load(self) -> None:
        self._client = self._connect()
        self.loaded = True

    @property
    def client(self) -> ClientT:
        assert self._client is not None, "load() builds the client"
        return self._client

    async def unload(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._disconnect(client)
        self.loaded = False

    def _api_key(self) -> str | None:
        """The key from the variable the registry names; missing is an error at start, not at first use."""
        if self.config.api_key_env is None:
            return None
        key = resolve_secret(self.config.api_key_env)
        if not key:
            raise ConfigError(
                f"model {self.name!r} needs an API key: set {self.config.api_key_env} in the environment or .env"
            )
        return key

    @staticmethod
    def split_system(request: GenerationInput) -> tuple[str | None, list[Message]]:
        """System text apart from the turns, for APIs that take it as a separate field."""
        messages = request.as_messages()
        system = "\n\n".join(m.content for m in messages if m.role == "system") or None
        return system, [m for m in messages if m.role != "system"]


def calls_made(reason: FinishReason, calls: object) -> FinishReason:
    """The finish reason of a turn that may have called tools: tool_calls when it did, unless the
    token limit cut it short (its last call's arguments are then cut too, and the client must know)."""
    return "tool_calls" if calls and reason != "length" else reason


def finish_reason(value: str | None, length: tuple[str, ...], filtered: tuple[str, ...]) -> FinishReason:
    """A provider's stop reason in our three words (anything else is a normal stop)."""
    if value in length:
        return "length"
    if value in filtered:
        return "content_filter"
    return "stop"


class ToolCalls:
    """Tool calls put together from their streamed pieces (ToolCallDelta), in the order they began."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}

    def add(self, piece: ToolCallDelta) -> ToolCallDelta:
        """Take a piece; what goes on names the call's id and name once, on its first piece (clients
        add up the pieces' strings: an OpenAI-compatible server that repeats them would double them)."""
        call = self._calls.setdefault(piece.index, ["", "", ""])
        first = not call[0]
        call[0] = call[0] or piece.id
        call[1] = call[1] or piece.name
        call[2] += piece.arguments
        return piece if first else ToolCallDelta(piece.index, arguments=piece.arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def done(self) -> tuple[ToolCall, ...]:
        # A call whose arguments never came takes none: "{}", the JSON of no arguments.
        return tuple(ToolCall(i, n, a or "{}") for i, n, a in (self._calls[k] for k in sorted(self._calls)))


def add_tool_result(
    turns: list[dict[str, Any]], result: dict[str, Any], is_result: Callable[[dict[str, Any]], bool]
) -> None:
    """Add a tool's result block to the conversation: the results of one assistant turn's calls share
    one user turn (as Anthropic's and Bedrock's APIs want), so it joins the turn of the result before it."""
    content = turns[-1]["content"] if turns and turns[-1]["role"] == "user" else None
    if isinstance(content, list) and content and is_result(content[-1]):
        content.append(result)
    else:
        turns.append({"role": "user", "content": [result]})


class OutputTool:
    """A JSON answer asked of a provider API that takes no schema for its answer (Anthropic's
    Messages, Bedrock's Converse): the answer is the arguments of one more tool, whose parameters are
    the schema, that the model must call — the way both providers document for JSON output. The
    model's call of it comes back as the answer's text (streamed as text deltas), finishing "stop";
    its calls of the caller's own tools stay tool calls."""

    name = "structured_output"

    def __init__(self, constraint: OutputConstraint | None, tooling: Tooling | None) -> None:
        # Asked only for JSON the model answers in text: a turn that must call one of the caller's
        # tools (choice required, or a named one) has no text answer for the schema to shape.
        self.active = constraint is not None and (tooling is None or tooling.choice in ("auto", "none"))
        self._constraint = constraint
        self._tooling = tooling

    def tooling(self) -> Tooling | None:
        """The tools to declare: the caller's, and the output tool, which the model must call unless
        it calls one of the caller's tools instead ("auto" becomes "required")."""
        if not self.active or self._constraint is None:
            return self._tooling
        schema = self._constraint.json_schema if self._constraint.kind == "json_schema" else None
        output = Tool(
            self.name,
            "Give the answer: its arguments are the answer, in the shape the schema asks for.",
            json.dumps(schema or {"type": "object"}),
            strict=self._constraint.strict,
        )
        theirs = self._tooling
        if theirs is None or theirs.choice == "none" or not theirs.tools:
            declared = theirs.tools if theirs is not None else ()  # kept: tool turns need them declared
            return Tooling((*declared, output), "function", self.name, parallel_calls=False)
        return Tooling((*theirs.tools, output), "required", parallel_calls=theirs.parallel_calls)

    async def answers(self, events: AsyncIterator[Event]) -> AsyncGenerator[Event, None]:
        """The backend's events with the output tool's call turned into the answer's text; the
        caller's calls keep their order, numbered from 0."""
        if not self.active:
            async for event in events:
                yield event
            return
        output_index: int | None = None
        numbers: dict[int, int] = {}
        answer: list[str] = []
        async for event in events:
            if isinstance(event, ToolCallDelta):
                if event.name == self.name:
                    output_index = event.index
                if event.index == output_index:
                    if event.arguments:
                        answer.append(event.arguments)
                        yield Delta(event.arguments, 0)
                    continue
                yield dataclasses.replace(event, index=numbers.setdefault(event.index, len(numbers)))
            elif isinstance(event, Finished):
                theirs = tuple(call for call in event.tool_calls if call.name != self.name)
                if output_index is None:
                    yield dataclasses.replace(event, tool_calls=theirs)
                    continue
                reason = event.finish_reason
                if reason == "tool_calls":
                    reason = "tool_calls" if theirs else "stop"
                text = "".join(answer) or next(
                    (call.arguments for call in event.tool_calls if call.name == self.name), ""
                )
                yield dataclasses.replace(event, text=text, tool_calls=theirs, finish_reason=reason)
            else:
                yield event

"""What every provider backend shares: the API key from the environment, and one request shape."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from services.common.config import ConfigError
from services.common.registry import CloudConfig, resolve_secret
from services.inference.backends.base import (
    Backend,
    FinishReason,
    GenerationInput,
    Message,
    ToolCall,
    ToolCallDelta,
)

ClientT = TypeVar("ClientT")


class CloudBackend(Backend, Generic[ClientT]):
    """A model behind a provider's API: nothing to load but a client; the provider keeps it warm."""

    provider = "cloud"
    # Every provider API the mesh speaks has function calling.
    calls_tools = True

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

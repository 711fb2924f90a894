"""The backend interface every model engine implements, and the plain types it speaks."""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.errors import ToolsNotSupported, UnsupportedTask
from services.common.registry import ModelConfig
from services.inference.errors import PromptTooLong, UnsupportedOutputControl

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
ToolChoiceMode = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    # The arguments as JSON text (an object).
    arguments: str


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # An assistant turn's tool calls; a tool turn's call id.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    # The arguments' JSON Schema as JSON text; empty: no arguments.
    parameters: str = ""
    strict: bool = False

    def schema(self) -> dict[str, Any]:
        """The arguments' schema as an object (an empty object schema when the tool takes none)."""
        return json.loads(self.parameters) if self.parameters else {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tooling:
    """The tools a generation may call, and whether and which it must."""

    tools: tuple[Tool, ...]
    choice: ToolChoiceMode = "auto"
    # The tool a "function" choice names.
    function: str = ""
    parallel_calls: bool = True


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    # None: the backend's default (a local engine's setting, a provider's own default).
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputConstraint:
    """What the output must be, enforced while decoding: JSON valid against a schema, any JSON
    object, or text a GBNF grammar accepts."""

    kind: Literal["json_schema", "json_object", "grammar"]
    # The schema (a parsed JSON object) for json_schema; the GBNF text for grammar.
    json_schema: dict[str, Any] | None = None
    strict: bool = False
    grammar: str = ""


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    token_bytes: bytes


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    token_bytes: bytes
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class GenerationInput:
    """Either a raw prompt or chat messages (rendered with the model's turn template)."""

    sampling: Sampling
    prompt: str | None = None
    messages: Sequence[Message] = field(default_factory=tuple)
    # The caller wants only the whole result: a provider backend may answer in one shot.
    one_shot: bool = False
    # The tools the model may call; None: none.
    tooling: Tooling | None = None
    constraint: OutputConstraint | None = None
    # Per-token log probabilities, and how many likeliest alternatives with each (0-20).
    logprobs: bool = False
    top_logprobs: int = 0

    def as_messages(self) -> list[Message]:
        """The input as chat turns: a raw prompt is one user turn (for chat-only provider APIs)."""
        if self.prompt is not None:
            return [Message("user", self.prompt)]
        return list(self.messages)


@dataclass(frozen=True)
class Delta:
    text: str
    # Model tokens this piece covers; 0 where the provider does not say (usage comes at the end).
    tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call `index`: the first has its id and name, later ones add to its arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Finished:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    # The stop string that ended it, where the backend knows; empty otherwise.
    stop_sequence: str = ""
    # Prompt tokens the engine read from its cache instead of evaluating (part of prompt_tokens).
    cached_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = ()
    # The tools the model called (finish_reason "tool_calls").
    tool_calls: tuple[ToolCall, ...] = ()


# What a generation yields: text deltas and tool-call pieces, then one Finished.
Event = Delta | ToolCallDelta | Finished


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    # Tokens read from all inputs; 0 where the provider does not say.
    prompt_tokens: int


class Backend(abc.ABC):
    """One model, generating as an async stream of deltas (and, where it can, embedding text)."""

    kind: str = "unknown"
    # Whether it can enforce an OutputConstraint while decoding, and report per-token logprobs.
    constrains_output: bool = False
    reports_logprobs: bool = False
    # Whether the host may unload it when idle or to make room (local engines holding weights).
    unloadable: bool = False
    # Whether it can call tools (GenerationInput.tooling, tool turns in the conversation).
    calls_tools: bool = False
    # Seconds its deltas may gather before they go out together (0: each on its own); set for local
    # engines, whose tokens share the CPU with the mesh's work per message (services/inference/coalescing.py).
    stream_interval_s: float = 0.0

    def __init__(self, name: str, config: ModelConfig) -> None:
        self.name = name
        self.config = config
        self.loaded = False

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def prompt_token_limit(self) -> int:
        """The most prompt tokens a request may have (0: no limit known)."""
        window = self.context_length - 1 if self.context_length else 0
        configured = self.config.max_prompt_tokens
        return min(configured, window) if configured and window else configured or window

    def check_prompt_tokens(self, count: int) -> None:
        """Refuse a prompt over the limit, naming it, before any generation starts."""
        limit = self.prompt_token_limit
        if limit and count > limit:
            raise PromptTooLong(
                f"the prompt is {count} tokens; model {self.name} accepts at most {limit} prompt tokens"
            )

    def check_output_controls(self, request: GenerationInput) -> None:
        """Refuse a constraint or logprobs this backend cannot honour, before anything runs."""
        if request.constraint is not None and not self.constrains_output:
            raise UnsupportedOutputControl(
                f"model {self.name} ({self.describe()}) cannot constrain its output to "
                f"{request.constraint.kind.replace('_', ' ')}"
            )
        if request.logprobs and not self.reports_logprobs:
            raise UnsupportedOutputControl(f"model {self.name} ({self.describe()}) does not report logprobs")

    def describe(self) -> str:
        """The backend as error messages name it."""
        return self.kind

    @abc.abstractmethod
    async def load(self) -> None:
        """Load the model (or build the provider client); set `loaded` when done."""

    def check_tools(self, request: GenerationInput) -> None:
        """Refuse tools, or a conversation with tool turns, when the model cannot call tools; a
        request whose tool_choice is "none" is answered in text without them."""
        uses_tools = request.tooling is not None and request.tooling.choice != "none"
        tool_turns = any(m.role == "tool" or m.tool_calls for m in request.messages)
        if (uses_tools or tool_turns) and not self.calls_tools:
            raise ToolsNotSupported(f"model {self.name} ({self.kind}) cannot call tools")

    @abc.abstractmethod
    def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        """Yield deltas as they are produced, then exactly one Finished.

        Closing the iterator early (the client went away) must stop the generation.
        """

    async def embed(self, inputs: list[str]) -> Embeddings:
        """One vector per input, in order."""
        raise UnsupportedTask(f"model {self.name} ({self.kind}) does not make embeddings")

    async def count_tokens(self, request: GenerationInput) -> int:
        """The prompt tokens `request` would be to the model (what its generation reports as
        prompt_tokens), without generating; backends that have no tokenizer at hand cannot say."""
        raise UnsupportedTask(f"model {self.name} ({self.kind}) cannot count tokens")

    def requests_waiting(self) -> int:
        """Requests queued for this model rather than running on it (engines that take turns say)."""
        return 0

    def engine_gauges(self) -> dict[str, float]:
        """Occupancy an engine with slots reports at scrape time: slots, slots_busy, kv_cache_usage."""
        return {}

    async def unload(self) -> None:
        """Free the model's memory; the next request loads it again."""
        self.loaded = False

    async def close(self) -> None:
        """Release everything at shutdown."""
        await self.unload()

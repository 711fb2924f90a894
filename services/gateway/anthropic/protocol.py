"""Request and response schemas of the Anthropic Messages API, as Anthropic's API reference defines them.

Text and client tools: content blocks other than text, tool_use and tool_result (images, documents,
thinking) and the fields that would need them (`thinking`, `mcp_servers`, `container`, server tools)
are refused with 400 naming them. `top_k` and `metadata` are accepted and ignored: the mesh's sampling has
no top-k, and top-k only narrows sampling further (greedy requests are unaffected).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from llmmesh.common.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.gateway.errors import field_error
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS, StopString
from services.gateway.openai.protocol import MAX_MESSAGES, MAX_TOOLS, ToolCallId

_ROLES = {"user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "refusal", "tool_use"]


class AnthropicTextBlock(BaseModel):
    """A text content block; `cache_control` and `citations` are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text"]
    text: str = Field(default="", max_length=MAX_PROMPT_CHARS)


class AnthropicToolUseBlock(BaseModel):
    """An assistant's call of a tool (sent back in the conversation as the model made it)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["tool_use"]
    id: ToolCallId
    name: str = Field(min_length=1, max_length=64)
    input: dict[str, Any]


class AnthropicToolResultBlock(BaseModel):
    """A tool's result, in a user turn, answering the tool_use block of the same id."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["tool_result"]
    tool_use_id: ToolCallId
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[AnthropicTextBlock] = ""
    is_error: bool = False

    def text(self) -> str:
        text = _text(self.content)
        return f"Error: {text}" if self.is_error else text


_BLOCK_TYPES = ("text", "tool_use", "tool_result")
Block = Annotated[
    AnthropicTextBlock | AnthropicToolUseBlock | AnthropicToolResultBlock, Field(discriminator="type")
]
Content = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[AnthropicTextBlock]


def _text(content: str | list[AnthropicTextBlock]) -> str:
    return content if isinstance(content, str) else "".join(block.text for block in content)


class AnthropicInputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[Block]

    @field_validator("content", mode="before")
    @classmethod
    def _known_blocks(cls, content: Any) -> Any:
        for block in content if isinstance(content, list) else ():
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCK_TYPES:
                raise ValueError(
                    f"content blocks of type {kind!r} are not supported by this server (text and tools only)"
                )
        return content

    @model_validator(mode="after")
    def _blocks_of_its_role(self) -> AnthropicInputMessage:
        misplaced = AnthropicToolResultBlock if self.role == "assistant" else AnthropicToolUseBlock
        if isinstance(self.content, list) and any(isinstance(b, misplaced) for b in self.content):
            kind = "tool_result" if self.role == "assistant" else "tool_use"
            raise field_error(
                "content", f"{kind} blocks belong in {'user' if kind == 'tool_result' else 'assistant'} turns"
            )
        return self

    def to_proto(self) -> list[common_pb2.ChatMessage]:
        """The turn as the mesh's messages: a user turn's tool results are tool turns (before its text);
        an assistant turn's tool_use blocks are its tool calls."""
        if isinstance(self.content, str):
            return [common_pb2.ChatMessage(role=_ROLES[self.role], content=self.content)]
        text = "".join(b.text for b in self.content if isinstance(b, AnthropicTextBlock))
        if self.role == "assistant":
            calls = [
                common_pb2.ToolCall(id=b.id, name=b.name, arguments=json.dumps(b.input, ensure_ascii=False))
                for b in self.content
                if isinstance(b, AnthropicToolUseBlock)
            ]
            return [common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, content=text, tool_calls=calls)]
        turns = [
            common_pb2.ChatMessage(role=common_pb2.ROLE_TOOL, content=b.text(), tool_call_id=b.tool_use_id)
            for b in self.content
            if isinstance(b, AnthropicToolResultBlock)
        ]
        if text or not turns:
            turns.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text))
        return turns


class AnthropicTool(BaseModel):
    """A client tool. Anthropic's server tools (web search, code execution, ...) have a `type` and are
    refused: the mesh runs no tools itself."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class AnthropicToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


_CHOICE_MODES = {
    "auto": common_pb2.ToolChoice.MODE_AUTO,
    "any": common_pb2.ToolChoice.MODE_REQUIRED,
    "tool": common_pb2.ToolChoice.MODE_FUNCTION,
    "none": common_pb2.ToolChoice.MODE_NONE,
}


class _Prompt(BaseModel):
    """What a message request and a token count share: the model and the conversation."""

    # Unknown fields are accepted (Anthropic adds fields often); the ones below are checked strictly.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=128, description="A model or route name (GET /v1/models).")
    messages: list[AnthropicInputMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: Content | None = None
    tools: Annotated[list[AnthropicTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: AnthropicToolChoice | None = None

    # Fields whose meaning the mesh cannot give: refused rather than silently dropped.
    unsupported_fields: ClassVar[tuple[str, ...]] = ("mcp_servers", "container")

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> _Prompt:
        extra: dict[str, Any] = self.model_extra or {}
        for name in self.unsupported_fields:
            if extra.get(name) not in (None, [], {}):
                raise field_error(name, "{field} is not supported by this server")
        names = [tool.name for tool in self.tools or []]
        choice = self.tool_choice
        if choice is not None and choice.type == "tool" and choice.name not in names:
            raise field_error("tool_choice", f"tool_choice names tool {choice.name!r}, which is not in tools")
        if len(set(names)) != len(names):
            raise field_error("tools", "every tool needs a name of its own")
        thinking = extra.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
            raise field_error("thinking", "thinking is not supported by this server")
        return self

    def system_text(self) -> str:
        return _text(self.system) if self.system is not None else ""

    def turns(self) -> list[common_pb2.ChatMessage]:
        return [turn for message in self.messages for turn in message.to_proto()]

    def tooling(self) -> common_pb2.Tooling | None:
        """The tools as the orchestrator takes them; None when the request has none."""
        if not self.tools:
            return None
        choice = self.tool_choice or AnthropicToolChoice(type="auto")
        tooling = common_pb2.Tooling(
            tools=[
                common_pb2.Tool(name=t.name, description=t.description, parameters=json.dumps(t.input_schema))
                for t in self.tools
            ],
            choice=common_pb2.ToolChoice(mode=_CHOICE_MODES[choice.type], function=choice.name or ""),
        )
        if choice.disable_parallel_tool_use:
            tooling.parallel_calls = False
        return tooling


class AnthropicMessagesRequest(_Prompt):
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    stop_sequences: Annotated[list[StopString], Field(max_length=4)] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="Accepted and ignored (no top-k sampling).")
    metadata: dict[str, Any] | None = Field(default=None, description="Accepted and ignored.")
    stream: bool = False

    def sampling(self) -> common_pb2.SamplingParams:
        return common_pb2.SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_sequences or [],
        )


class AnthropicCountTokensRequest(_Prompt):
    pass


class AnthropicOutputText(BaseModel):
    type: Literal["text"] = "text"
    text: str


class AnthropicOutputToolUse(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class AnthropicMessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[AnthropicOutputText | AnthropicOutputToolUse]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: AnthropicMessageUsage


class AnthropicTokenCount(BaseModel):
    input_tokens: int

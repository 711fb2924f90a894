"""Request and response schemas of the Anthropic Messages API, as Anthropic's API reference defines them.

Text only: content blocks other than text (images, documents, tool use and results, thinking) and the
fields that would need them (`tools`, `tool_choice`, `thinking`, `mcp_servers`, `container`) are
refused with 400 naming them. `top_k` and `metadata` are accepted and ignored: the mesh's sampling has
no top-k, and top-k only narrows sampling further (greedy requests are unaffected).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from llmmesh.common.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.gateway.errors import field_error
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS, StopString
from services.gateway.openai.protocol import MAX_MESSAGES

_ROLES = {"user": common_pb2.ROLE_USER, "assistant": common_pb2.ROLE_ASSISTANT}
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "refusal"]


class AnthropicTextBlock(BaseModel):
    """A text content block; `cache_control` and `citations` are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str
    text: str = Field(default="", max_length=MAX_PROMPT_CHARS)

    @field_validator("type")
    @classmethod
    def _text_only(cls, kind: str) -> str:
        if kind != "text":
            raise ValueError(f"content blocks of type {kind!r} are not supported by this server (text only)")
        return kind


Content = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[AnthropicTextBlock]


def _text(content: Content) -> str:
    return content if isinstance(content, str) else "".join(block.text for block in content)


class AnthropicInputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["user", "assistant"]
    content: Content

    def to_proto(self) -> common_pb2.ChatMessage:
        return common_pb2.ChatMessage(role=_ROLES[self.role], content=_text(self.content))


class _Prompt(BaseModel):
    """What a message request and a token count share: the model and the conversation."""

    # Unknown fields are accepted (Anthropic adds fields often); the ones below are checked strictly.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=128, description="A model or route name (GET /v1/models).")
    messages: list[AnthropicInputMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: Content | None = None

    # Fields whose meaning the mesh cannot give: refused rather than silently dropped.
    unsupported_fields: ClassVar[tuple[str, ...]] = ("tools", "tool_choice", "mcp_servers", "container")

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> _Prompt:
        extra: dict[str, Any] = self.model_extra or {}
        for name in self.unsupported_fields:
            if extra.get(name) not in (None, [], {}):
                raise field_error(
                    name, "{field} is not supported by this server (tool use is not available yet)"
                )
        thinking = extra.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
            raise field_error("thinking", "thinking is not supported by this server")
        return self

    def system_text(self) -> str:
        return _text(self.system) if self.system is not None else ""

    def turns(self) -> list[common_pb2.ChatMessage]:
        return [m.to_proto() for m in self.messages]


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


class AnthropicMessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[AnthropicOutputText]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: AnthropicMessageUsage


class AnthropicTokenCount(BaseModel):
    input_tokens: int

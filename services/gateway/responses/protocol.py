"""Request and response schemas of the Responses API (POST /v1/responses and the stored-response
routes), as OpenAI's API reference defines them, for text in and text out.

What the mesh cannot honour yet and that would change the answer is refused with 400 naming the field:
tools and tool items (function_call_output, ...), structured output (`text.format` other than text),
non-text content (images, files, audio), `background`, `conversation`, `prompt`, `truncation: auto`
and logprobs. Fields that only tune further (`reasoning`, `include`, `user`, `service_tier`,
`parallel_tool_calls`, `prompt_cache_key`, ...) are accepted and ignored, as the chat completions
route does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS
from services.gateway.openai.protocol import MAX_MESSAGES

# What a response id or an input item id may look like here ("resp_…", "msg_…").
ObjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
Text = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]

# Input item types other than messages, and why each is refused.
_TOOL_ITEMS = (
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "computer_call",
    "computer_call_output",
    "file_search_call",
    "web_search_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "image_generation_call",
)


def _unsupported(message: str) -> PydanticCustomError:
    return PydanticCustomError("unsupported", message)


class ContentPart(BaseModel):
    """A text part of an input message (`output_text` for an assistant's earlier turn)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["input_text", "output_text"]
    text: Text


class InputMessage(BaseModel):
    """An input item of type message (the SDK's EasyInputMessage and input message)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Text | Annotated[list[ContentPart], Field(min_length=1)]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class TextFormat(BaseModel):
    type: Literal["text"] = "text"


class TextConfig(BaseModel):
    """`text` of a response: plain text is the one format the mesh produces so far."""

    format: TextFormat = Field(default_factory=TextFormat)


class CreateResponseRequest(BaseModel):
    """POST /v1/responses."""

    # Unknown fields are ignored (see the module docstring); the ones below are checked, strictly.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A model or route name; unset: the default route.",
    )
    input: (
        Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
        | Annotated[list[InputMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    ) = Field(description="A user message as text, or a list of message items.")
    instructions: Text | None = Field(
        default=None,
        description="A system message placed first; not carried over to a response that continues this one.",
    )
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    metadata: dict[str, Any] | None = Field(
        default=None, description="Up to 16 pairs, keys of at most 64 characters, values of at most 512."
    )
    store: bool = Field(default=True, description="Keep the response: retrievable and continuable by its id.")
    previous_response_id: ObjectId | None = Field(
        default=None,
        description="Continue from this stored response: its chain's input and output come first.",
    )
    stream: bool = False
    parallel_tool_calls: bool | None = None
    tools: list[dict[str, Any]] | None = Field(
        default=None,
        description="Only file_search tools: their vector stores are searched with the last user turn and "
        "the chunks found are placed in the prompt, numbered; the output text cites them "
        "(file_citation annotations).",
    )
    tool_choice: str | dict[str, Any] | None = Field(default=None, description='Only "auto" or "none".')
    text: dict[str, Any] | None = Field(default=None, description='Only {"format": {"type": "text"}}.')
    background: bool | None = Field(default=None, description="Not supported: must be false.")
    conversation: Any = Field(default=None, description="Not supported: use previous_response_id.")
    prompt: Any = Field(default=None, description="Not supported: send instructions and input.")
    truncation: Literal["auto", "disabled"] | None = Field(default=None, description='Only "disabled".')
    top_logprobs: int | None = Field(default=None, description="Not supported: must be 0.")

    @field_validator("input", mode="before")
    @classmethod
    def _text_messages_only(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind in _TOOL_ITEMS:
                raise _unsupported(
                    f"input[{index}]: {kind} items are not supported yet (tools are not supported)"
                )
            if kind == "item_reference":
                raise _unsupported(
                    f"input[{index}]: item references are not supported (use previous_response_id)"
                )
            if kind != "message":
                raise _unsupported(f"input[{index}]: {kind} items are not supported (messages only)")
            content = item.get("content")
            for part_index, part in enumerate(content if isinstance(content, list) else ()):
                part_type = part.get("type") if isinstance(part, dict) else None
                if part_type not in ("input_text", "output_text"):
                    raise _unsupported(
                        f"input[{index}].content[{part_index}]: {part_type} content is not supported (text only)"
                    )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Checked here rather than by key and value types, whose errors would quote the keys back.
        if value is None:
            return value
        if not all(isinstance(text, str) for text in value.values()):
            raise PydanticCustomError("string_type", "metadata values are strings")
        if len(value) > MAX_METADATA_PAIRS:
            raise PydanticCustomError("too_long", f"metadata holds at most {MAX_METADATA_PAIRS} pairs")
        if any(len(key) > MAX_METADATA_KEY_CHARS for key in value):
            raise PydanticCustomError(
                "too_long", f"a metadata key is at most {MAX_METADATA_KEY_CHARS} characters"
            )
        if any(len(text) > MAX_METADATA_VALUE_CHARS for text in value.values()):
            raise PydanticCustomError(
                "too_long", f"a metadata value is at most {MAX_METADATA_VALUE_CHARS} characters"
            )
        return value

    @field_validator("tools")
    @classmethod
    def _file_search_only(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for tool in value or ():
            if tool.get("type") != "file_search":
                raise _unsupported("tools are not supported yet, but for file_search")
            ids = tool.get("vector_store_ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise PydanticCustomError("file_search", "a file_search tool needs vector_store_ids")
        return value

    def file_search(self) -> dict[str, Any] | None:
        """The file_search tool, its vector stores joined when there are several."""
        tools = [tool for tool in self.tools or () if tool.get("type") == "file_search"]
        if not tools:
            return None
        joined = dict(tools[0])
        joined["vector_store_ids"] = [i for tool in tools for i in tool["vector_store_ids"]]
        return joined

    @field_validator("tool_choice")
    @classmethod
    def _no_tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value not in (None, "auto", "none"):
            raise _unsupported('tool_choice other than "auto" or "none" is not supported yet (no tools)')
        return value

    @field_validator("text")
    @classmethod
    def _plain_text(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        text_format = (value or {}).get("format")
        kind = text_format.get("type") if isinstance(text_format, dict) else text_format
        if kind not in (None, "text"):
            raise _unsupported(f"text.format {kind} is not supported yet (plain text only)")
        return value

    @field_validator("background")
    @classmethod
    def _foreground(cls, value: bool | None) -> bool | None:
        if value:
            raise _unsupported("background responses are not supported (POST /api/v1/ai/generate runs jobs)")
        return value

    @field_validator("conversation")
    @classmethod
    def _no_conversation(cls, value: Any) -> Any:
        if value is not None:
            raise _unsupported("conversation is not supported: continue with previous_response_id")
        return value

    @field_validator("prompt")
    @classmethod
    def _no_prompt(cls, value: Any) -> Any:
        if value is not None:
            raise _unsupported("prompt templates are not supported: send instructions and input")
        return value

    @field_validator("truncation")
    @classmethod
    def _no_truncation(cls, value: str | None) -> str | None:
        if value == "auto":
            raise _unsupported(
                'truncation "auto" is not supported: an input over the model\'s limit is a 400'
            )
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise _unsupported("top_logprobs is not supported")
        return value

    def messages(self) -> list[InputMessage]:
        """The input as message items (a string is one user message)."""
        if isinstance(self.input, str):
            return [InputMessage(role="user", content=self.input)]
        return self.input


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class InputText(BaseModel):
    type: Literal["input_text"] = "input_text"
    text: str


class OutputMessage(BaseModel):
    """The assistant's message: a response's one output item (and an assistant turn of its input)."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class InputMessageItem(BaseModel):
    """A user, system or developer message of a response's input, as the input items list shows it."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer"]
    status: ItemStatus = "completed"
    content: list[InputText]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseError(BaseModel):
    """Why a response failed: OpenAI's code (`server_error`) and the mesh's message."""

    code: str
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(BaseModel):
    """A response, as create, retrieve and the stream's events return it. The SDKs' `output_text`
    is their own convenience (the output messages' text joined), not a field of the API."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str = Field(description="The model or route the request named (the default route's name if none).")
    output: list[OutputMessage]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: None = None
    store: bool
    temperature: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: Literal["auto", "none"] = "auto"
    tools: list[Any] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    background: bool = False

    @model_serializer(mode="wrap")
    def _usage_once_known(self, serialize: SerializerFunctionWrapHandler):
        """`usage` is left out until the response has it: OpenAI's schema does not let it be null.
        (No return annotation: pydantic would document that type instead of the object's fields.)"""
        data: dict[str, Any] = serialize(self)
        if data.get("usage", 0) is None:
            del data["usage"]
        return data


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


class InputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InputMessageItem | OutputMessage]
    first_id: str | None
    last_id: str | None
    has_more: bool

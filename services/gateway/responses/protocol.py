"""Request and response schemas of the Responses API (POST /v1/responses and the stored-response
routes), as OpenAI's API reference defines them: text in, text (or JSON of a schema) and function
calls out.

What the mesh cannot honour and that would change the answer is refused with 400 naming the field:
tools other than function and file_search (and their items: web_search_call, computer_call, ...),
non-text content (images, files, audio), `background`, `conversation`, `prompt`, `truncation: auto`
and logprobs. Fields that only tune further (`reasoning`, `include`, `user`, `service_tier`,
`prompt_cache_key`, ...) are accepted and ignored, as the chat completions route does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.gateway.errors import field_error
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS
from services.gateway.openai.protocol import (
    MAX_MESSAGES,
    MAX_TOOLS,
    FunctionDefinition,
    JsonSchemaFormat,
    ToolCallId,
)

# What a response id or an input item id may look like here ("resp_…", "msg_…").
ObjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
Text = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]

# Input item types of tools the mesh does not have (function calls and their outputs it has).
_TOOL_ITEMS = (
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


class FunctionCallInput(BaseModel):
    """A function call the model made earlier, sent back before its output (a function_call item)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    call_id: ToolCallId
    name: str = Field(min_length=1, max_length=64)
    arguments: Text


class FunctionCallOutputInput(BaseModel):
    """A function's result for a call (a function_call_output item): text, or input_text parts."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    call_id: ToolCallId
    output: Text | Annotated[list[ContentPart], Field(min_length=1)]

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


InputItem = InputMessage | FunctionCallInput | FunctionCallOutputInput


class FunctionTool(FunctionDefinition):
    """A function tool, as the Responses API defines it (flat: no nested "function")."""

    type: Literal["function"]


class TextFormat(BaseModel):
    """`text.format`: plain text, any JSON object, or JSON valid against a schema (flat, as the
    Responses API has it: name, schema, strict beside the type)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, serialize_by_alias=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    def json_schema(self) -> JsonSchemaFormat | None:
        if self.type != "json_schema":
            return None
        return JsonSchemaFormat.model_validate(
            {
                "name": self.name,
                "description": self.description,
                "schema": self.schema_,
                "strict": self.strict,
            }
        )

    @model_serializer(mode="wrap")
    def _only_what_applies(self, serialize: SerializerFunctionWrapHandler):
        data: dict[str, Any] = serialize(self)
        return {key: value for key, value in data.items() if value is not None}


class TextConfig(BaseModel):
    """`text` of a request and of the response it made."""

    model_config = ConfigDict(extra="ignore")

    format: TextFormat = Field(default_factory=TextFormat)

    @model_validator(mode="after")
    def _schema_when_asked(self) -> TextConfig:
        if self.format.type == "json_schema" and (self.format.name is None or self.format.schema_ is None):
            raise field_error("format", 'a "json_schema" format needs its name and schema')
        return self


class NamedFunctionChoice(BaseModel):
    type: Literal["function"]
    name: str


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
        | Annotated[list[InputItem], Field(min_length=1, max_length=MAX_MESSAGES)]
    ) = Field(
        description="A user message as text, or a list of items: messages, function_call and "
        "function_call_output."
    )
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
    tools: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = Field(
        default=None,
        description="function tools (the model may call them: function_call output items), and "
        "file_search tools (their vector stores are searched with the last user turn and the chunks "
        "found are placed in the prompt, numbered; the output text cites them: file_citation "
        "annotations).",
    )
    tool_choice: Literal["auto", "none", "required"] | NamedFunctionChoice | None = Field(
        default=None, description='"auto", "none", "required", or {"type": "function", "name"}.'
    )
    text: TextConfig | None = Field(
        default=None,
        description='format: {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "name", '
        '"schema", "strict"}, on models that can enforce it (as chat\'s response_format).',
    )
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
            if kind in ("function_call", "function_call_output"):
                continue
            if kind in _TOOL_ITEMS:
                raise _unsupported(
                    f"input[{index}]: {kind} items are not supported (of tools, only functions)"
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
    def _functions_and_file_search(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, tool in enumerate(value or ()):
            kind = tool.get("type")
            if kind == "function":
                continue  # checked as FunctionTool by functions()
            if kind != "file_search":
                raise _unsupported(
                    f"tools[{index}]: {kind} tools are not supported (function and file_search only)"
                )
            ids = tool.get("vector_store_ids")
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise PydanticCustomError("file_search", "a file_search tool needs vector_store_ids")
        return value

    @model_validator(mode="after")
    def _choice_among_the_functions(self) -> CreateResponseRequest:
        names = [tool.name for tool in self.functions()]
        if len(set(names)) != len(names):
            raise field_error("tools", "every function tool needs a name of its own")
        if isinstance(self.tool_choice, NamedFunctionChoice) and self.tool_choice.name not in names:
            raise field_error(
                "tool_choice", f"tool_choice names function {self.tool_choice.name!r}, which is not in tools"
            )
        if self.tool_choice == "required" and not names:
            raise field_error("tool_choice", 'tool_choice "required" needs function tools')
        return self

    def functions(self) -> list[FunctionTool]:
        """The function tools (validated here: a bad one is a 400 naming its field)."""
        found = []
        for index, tool in enumerate(self.tools or ()):
            if tool.get("type") == "function":
                try:
                    found.append(FunctionTool.model_validate(tool))
                except ValidationError as error:
                    detail = error.errors()[0]
                    where = ".".join(str(part) for part in (index, *detail["loc"]))
                    raise field_error(f"tools.{where}", detail["msg"], detail["type"]) from None
        return found

    def echoed_tools(self) -> list[dict[str, Any]]:
        """The tools as the response object lists them: function tools with all their fields."""
        return [
            FunctionTool.model_validate(tool).model_dump() if tool.get("type") == "function" else tool
            for tool in self.tools or ()
        ]

    def search_query(self) -> str:
        """What a file_search tool searches with: the last user message's text."""
        users = [item for item in self.items() if isinstance(item, InputMessage) and item.role == "user"]
        return users[-1].text() if users else ""

    def wants_search_results(self) -> bool:
        include = (self.model_extra or {}).get("include")
        return isinstance(include, list) and "file_search_call.results" in include

    def file_search(self) -> dict[str, Any] | None:
        """The file_search tool, its vector stores joined when there are several."""
        tools = [tool for tool in self.tools or () if tool.get("type") == "file_search"]
        if not tools:
            return None
        joined = dict(tools[0])
        joined["vector_store_ids"] = [i for tool in tools for i in tool["vector_store_ids"]]
        return joined

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

    def items(self) -> list[InputItem]:
        """The input as items (a string is one user message)."""
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


class FunctionCallItem(BaseModel):
    """A function call the model made: an output item (and, sent back, an input item)."""

    id: str
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str
    status: ItemStatus = "completed"


class FunctionCallOutputItem(BaseModel):
    """A function's result, as a response's input items list shows it."""

    id: str
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str
    status: ItemStatus = "completed"


class FileSearchResult(BaseModel):
    file_id: str
    filename: str
    text: str
    score: float
    attributes: dict[str, Any] = Field(default_factory=dict)


class FileSearchCallItem(BaseModel):
    """The search a file_search tool ran before the model answered: the query, and the chunks found
    when the request's `include` asks for them ("file_search_call.results"), else null."""

    id: str
    type: Literal["file_search_call"] = "file_search_call"
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"] = "completed"
    queries: list[str]
    results: list[FileSearchResult] | None = None


OutputItem = FileSearchCallItem | OutputMessage | FunctionCallItem


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
    output: list[OutputItem]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: None = None
    store: bool
    temperature: float | None = None
    text: TextConfig = Field(default_factory=TextConfig)
    tool_choice: Literal["auto", "none", "required"] | NamedFunctionChoice = "auto"
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
    data: list[InputMessageItem | OutputMessage | FunctionCallItem | FunctionCallOutputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool

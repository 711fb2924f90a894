"""Request and response schemas of the OpenAI-compatible API, as OpenAI's API reference defines them.

Fields the mesh cannot honour and that would change the answer (legacy functions, n > 1, ...) are
refused with 400 naming the field; fields that only tune sampling further (penalties, logit_bias,
user, metadata, ...) are accepted and ignored, as most OpenAI-compatible servers do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from llmmesh.common.v1 import common_pb2
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from services.common.results import FinishReason, Usage
from services.gateway.errors import field_error
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS
from services.gateway.knowledge.protocol import Hit
from services.gateway.openai import tokens

MAX_MESSAGES = 256
_ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "developer": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "tool": common_pb2.ROLE_TOOL,
}
# OpenAI's limit on the tools of one request.
MAX_TOOLS = 128
# A tool call's id as a client sends it back: the mesh's ids may carry what a provider must get back
# with the call (Gemini's thought signature), so they are longer than most.
ToolCallId = Annotated[str, Field(min_length=1, max_length=8192)]
_CHOICE_MODES = {
    "auto": common_pb2.ToolChoice.MODE_AUTO,
    "none": common_pb2.ToolChoice.MODE_NONE,
    "required": common_pb2.ToolChoice.MODE_REQUIRED,
}
ConversationId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Stop = str | Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=4)] | None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


def arguments_object(call: common_pb2.ToolCall) -> dict[str, Any]:
    """A call's arguments as an object, for the APIs whose calls carry one (Anthropic's `input`,
    Ollama's `arguments`); arguments a model wrote that are not a JSON object read as {}."""
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    # JSON text, as the model wrote it (OpenAI's API does not promise it parses).
    arguments: str = Field(max_length=MAX_PROMPT_CHARS)


class ToolCall(BaseModel):
    id: ToolCallId
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # "developer" is OpenAI's newer name for system instructions.
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # An assistant turn that called tools may have no content.
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[TextPart] | None = None
    name: str | None = None
    tool_calls: Annotated[list[ToolCall], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: ToolCallId | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> ChatMessage:
        if self.role == "tool" and self.tool_call_id is None:
            raise field_error("tool_call_id", "a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise field_error("tool_calls", "only an assistant message carries tool_calls")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise field_error(
                "content", "content is required (only an assistant message with tool_calls may omit it)"
            )
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def to_proto(self) -> common_pb2.ChatMessage:
        return common_pb2.ChatMessage(
            role=_ROLES[self.role],
            content=self.text(),
            tool_calls=[
                common_pb2.ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in self.tool_calls or []
            ],
            tool_call_id=self.tool_call_id or "",
        )


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, _ and -, at most 64.")
    description: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    parameters: dict[str, Any] | None = Field(default=None, description="The arguments' JSON Schema.")
    strict: bool | None = False


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Letters, digits, _ and -, at most 64.")
    description: str | None = None
    schema_: dict[str, Any] = Field(
        alias="schema", description="The JSON Schema the reply validates against."
    )
    strict: bool | None = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_asked(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise field_error("json_schema", 'type "json_schema" needs json_schema: {"name", "schema"}')
        return self


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


def constraint_of(kind: str, json_schema: JsonSchemaFormat | None) -> common_pb2.OutputConstraint | None:
    """An output format (chat's response_format, the Responses API's text.format) as the
    orchestrator takes it; None for text."""
    if kind == "text":
        return None
    if kind == "json_object":
        return common_pb2.OutputConstraint(json_object=common_pb2.JsonObjectConstraint())
    assert json_schema is not None  # the formats' validators check it
    return common_pb2.OutputConstraint(
        json_schema=common_pb2.JsonSchemaConstraint(
            schema=json.dumps(json_schema.schema_), strict=bool(json_schema.strict), name=json_schema.name
        )
    )


def tooling_of(
    functions: Sequence[FunctionDefinition], mode: str | None, named: str | None, parallel: bool | None
) -> common_pb2.Tooling | None:
    """Function tools and the choice among them ("auto", "none", "required", or the one `named`) as
    the orchestrator takes them; None when there are none."""
    if not functions:
        return None
    tooling = common_pb2.Tooling(
        tools=[
            common_pb2.Tool(
                name=f.name,
                description=f.description,
                parameters=json.dumps(f.parameters) if f.parameters else "",
                strict=bool(f.strict),
            )
            for f in functions
        ]
    )
    if named is not None:
        tooling.choice.mode = common_pb2.ToolChoice.MODE_FUNCTION
        tooling.choice.function = named
    else:
        tooling.choice.mode = _CHOICE_MODES[mode or "auto"]
    if parallel is not None:
        tooling.parallel_calls = parallel
    return tooling


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    """What chat completions and completions share."""

    # Unknown fields are ignored (see the module docstring); the ones below are checked, strictly:
    # "max_tokens": true or "8" is a bad field, as OpenAI's API answers, not a silently read number.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1, max_length=128, description="A model or route name (GET /v1/models).")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, description="Only 1 is supported: one choice per request.")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    # Fields whose meaning the mesh cannot give: refused rather than silently dropped.
    unsupported_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> _Sampling:
        extra: dict[str, Any] = self.model_extra or {}
        for name in self.unsupported_fields:
            if extra.get(name) not in (None, False, [], {}, "none", "auto", 0):
                raise field_error(name, "{field} is not supported by this server")
        if self.n > 1:
            raise field_error("n", "n greater than 1 is not supported: each request gets one choice")
        return self


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    conversation_id: ConversationId | None = Field(
        default=None,
        description="LLM Mesh extension: keep this conversation's turns in the store, so a client sends "
        "only its new turn (also accepted as the X-Conversation-ID header).",
    )
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    knowledge_bases: list[str] | None = Field(
        default=None,
        max_length=20,
        description="LLM Mesh extension: knowledge bases (vector store ids) the last user turn searches; "
        "the chunks found go into the prompt, numbered, and the response lists them as `sources`.",
    )
    knowledge_top_k: int = Field(default=5, ge=1, le=50, description="LLM Mesh extension: chunks retrieved.")
    response_format: ResponseFormat | None = Field(
        default=None,
        description="text, json_object or json_schema: on models that can enforce it (the local engine, "
        "OpenAI-compatible servers); others are passed over on a route, or answer 400.",
    )
    logprobs: bool | None = Field(
        default=None, description="Each generated token's log probability (models that report them)."
    )
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="With logprobs: the likeliest tokens at each position."
    )
    unsupported_fields = ("functions", "audio", "prediction")

    @model_validator(mode="after")
    def _well_formed_tools(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise field_error("top_logprobs", "top_logprobs needs logprobs: true")
        names = [tool.function.name for tool in self.tools or []]
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise field_error(
                "tool_choice",
                f"tool_choice names function {self.tool_choice.function.name!r}, which is not in tools",
            )
        if self.tool_choice == "required" and not names:
            raise field_error("tool_choice", 'tool_choice "required" needs tools')
        if len(set(names)) != len(names):
            raise field_error("tools", "every tool needs a name of its own")
        return self

    def constraint(self) -> common_pb2.OutputConstraint | None:
        """The response_format as the orchestrator takes it; None for text."""
        if self.response_format is None:
            return None
        return constraint_of(self.response_format.type, self.response_format.json_schema)

    def tooling(self) -> common_pb2.Tooling | None:
        """The tools as the orchestrator takes them; None when the request has none."""
        named = self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None
        mode = None if isinstance(self.tool_choice, NamedToolChoice) else self.tool_choice
        return tooling_of([t.function for t in self.tools or []], mode, named, self.parallel_tool_calls)

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: (
        Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]],
            Field(min_length=1, max_length=1),
        ]
    ) = Field(description="One prompt (a list of one is accepted too).")
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=5,
        description="Each generated token's log probability and this many likeliest alternatives "
        "(models that report them).",
    )
    unsupported_fields = ("echo", "suffix", "best_of")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    # null when the model only called tools
    content: str | None
    tool_calls: list[ToolCall] | None = Field(default=None, description="The tools the model called.")

    @model_serializer(mode="wrap")
    def _calls_only_when_made(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # OpenAI's schema has no null tool_calls: a message without calls has none.
        data: dict[str, Any] = handler(self)
        if data.get("tool_calls") is None:
            data.pop("tool_calls", None)
        return data

    refusal: None = Field(
        default=None, description="Always null: the mesh's models do not refuse in a separate field."
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: None = None

    @classmethod
    def from_proto(cls, items: Sequence[common_pb2.TokenLogprob]) -> ChoiceLogprobs:
        def top(item: common_pb2.TopLogprob | common_pb2.TokenLogprob) -> dict[str, Any]:
            return {"token": item.token, "logprob": item.logprob, "bytes": list(item.bytes)}

        return cls(
            content=[
                TokenLogprob(**top(item), top_logprobs=[TopLogprob(**top(t)) for t in item.top_logprobs])
                for item in items
            ]
        )


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    # LLM Mesh extension: the knowledge base chunks the prompt was given, [1] first (knowledge_bases).
    sources: list[Hit] | None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions' logprobs: per token its text, log probability, likeliest alternatives
    and where it starts in the text (`start`: the offset of the piece within the whole completion)."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]

    @classmethod
    def from_proto(cls, items: Sequence[common_pb2.TokenLogprob], start: int = 0) -> CompletionLogprobs:
        offsets, position = [], start
        for item in items:
            offsets.append(position)
            position += len(item.token)
        return cls(
            tokens=[item.token for item in items],
            token_logprobs=[item.logprob for item in items],
            top_logprobs=[{top.token: top.logprob for top in item.top_logprobs} for item in items],
            text_offset=offsets,
        )


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


EmbedText = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
# OpenAI's limit for one embeddings input; a token array over it is refused, not truncated.
MAX_INPUT_TOKENS = 8192
MAX_INPUTS = 256
TokenArray = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_INPUT_TOKENS)]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=128)
    input: (
        EmbedText
        | Annotated[list[EmbedText], Field(min_length=1, max_length=MAX_INPUTS)]
        | TokenArray
        | Annotated[list[TokenArray], Field(min_length=1, max_length=MAX_INPUTS)]
    ) = Field(
        description="A text, a list of texts, or token arrays (one, or a list of them) of OpenAI's "
        "cl100k_base encoding, as tiktoken and LangChain send them: they are embedded as the text they encode."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, description="Not supported; must be left out.")

    _texts: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _read_input(self) -> EmbeddingRequest:
        if self.dimensions is not None:
            raise field_error("dimensions", "dimensions is not supported by this server")
        items: list[Any] = [self.input] if isinstance(self.input, str) else list(self.input)
        if items and all(isinstance(item, int) for item in items):
            items = [items]  # one token array
        try:
            self._texts = [item if isinstance(item, str) else tokens.decode(item) for item in items]
        except tokens.UnknownToken as exc:
            raise field_error("input", str(exc), "invalid_token") from exc
        return self

    def texts(self) -> list[str]:
        """The inputs as texts, token arrays decoded."""
        return self._texts


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = Field(description='"llm-mesh" for a model, "llm-mesh:route" for a route.')


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]

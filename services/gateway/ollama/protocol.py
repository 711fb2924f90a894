"""Request and response schemas of the Ollama API, as Ollama's API documentation defines them.

Fields the mesh cannot honour and that would change the answer are refused with 400 naming them:
`images`, `think`, `suffix`, `template`,
`context` and `dimensions`. OllamaOptions that only tune the engine or sampling further (`top_k`, `num_ctx`,
`repeat_penalty`, `keep_alive`, ...) are accepted and ignored, as the OpenAI front door does with its own.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from llmmesh.common.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.errors import InvalidGenerationRequest
from services.gateway.errors import field_error
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS, StopString
from services.gateway.models.protocol import MAX_EMBED_CHARS, MAX_EMBED_INPUTS
from services.gateway.openai.protocol import MAX_MESSAGES, MAX_TOOLS, ToolDefinition

_ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
    "tool": common_pb2.ROLE_TOOL,
}
DoneReason = Literal["stop", "length", "load"]
ModelName = Annotated[
    str, Field(min_length=1, max_length=128, description="A model or route name (GET /api/tags).")
]


def _refuse(extra: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if extra.get(name) not in (None, False, "", [], {}):
            raise field_error(name, "{field} is not supported by this server")


class OllamaOptions(BaseModel):
    """The model options the mesh reads; the others (`top_k`, `num_ctx`, `repeat_penalty`, ...) are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    num_predict: int | None = Field(
        default=None, le=MAX_TOKENS, description="Tokens to generate at most; -1 or -2: the server's default."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    stop: Annotated[list[StopString], Field(max_length=4)] | None = None

    def sampling(self) -> common_pb2.SamplingParams:
        limit = self.num_predict if self.num_predict is not None and self.num_predict > 0 else 0
        return common_pb2.SamplingParams(
            max_tokens=limit,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=self.stop or [],
        )


class _Generating(BaseModel):
    """What chat and generate share."""

    # Unknown fields are ignored (see the module docstring); the ones below are checked strictly.
    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelName
    stream: bool = Field(default=True, description="NDJSON lines as the model produces text (the default).")
    options: OllamaOptions | None = None
    format: Literal["json"] | dict[str, Any] | None = Field(
        default=None, description='"json" (one JSON object) or a JSON schema the reply validates against.'
    )
    unsupported_fields: ClassVar[tuple[str, ...]] = ("think",)

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> _Generating:
        _refuse(self.model_extra or {}, self.unsupported_fields)
        return self

    def sampling(self) -> common_pb2.SamplingParams:
        return (self.options or OllamaOptions()).sampling()

    def constraint(self) -> common_pb2.OutputConstraint | None:
        """Ollama's format as the orchestrator's output constraint (the same as OpenAI's response_format)."""
        if self.format is None:
            return None
        if self.format == "json":
            return common_pb2.OutputConstraint(json_object=common_pb2.JsonObjectConstraint())
        schema = common_pb2.JsonSchemaConstraint(schema=json.dumps(self.format), strict=True)
        return common_pb2.OutputConstraint(json_schema=schema)


class OllamaFunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    function: OllamaFunctionCall


class OllamaChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(default="", max_length=MAX_PROMPT_CHARS)
    tool_calls: Annotated[list[OllamaToolCall], Field(max_length=MAX_TOOLS)] | None = None
    # A tool turn: the tool whose result it is (Ollama's calls have no ids).
    tool_name: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _text_only(self) -> OllamaChatMessage:
        _refuse(self.model_extra or {}, ("images",))
        return self


class OllamaChatRequest(_Generating):
    messages: list[OllamaChatMessage] = Field(
        default_factory=list,
        max_length=MAX_MESSAGES,
        description="None: the model is only checked (done_reason load).",
    )
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None

    def turns(self) -> list[common_pb2.ChatMessage]:
        """The messages as the mesh's turns. Ollama's tool calls have no ids: each gets one from its
        place in the conversation, and a tool turn answers the earliest unanswered call of its tool
        (of any tool, when it names none)."""
        turns: list[common_pb2.ChatMessage] = []
        unanswered: list[common_pb2.ToolCall] = []
        for position, message in enumerate(self.messages):
            turn = common_pb2.ChatMessage(role=_ROLES[message.role], content=message.content)
            for index, call in enumerate(message.tool_calls or []):
                made = common_pb2.ToolCall(
                    id=f"call_{position}_{index}",
                    name=call.function.name,
                    arguments=json.dumps(call.function.arguments, ensure_ascii=False),
                )
                turn.tool_calls.append(made)
                unanswered.append(made)
            if message.role == "tool":
                answered = next((c for c in unanswered if message.tool_name in (None, c.name)), None)
                if answered is None:
                    raise InvalidGenerationRequest(
                        f"messages[{position}]: a tool message answers no tool call of an earlier assistant message"
                    )
                unanswered.remove(answered)
                turn.tool_call_id = answered.id
            turns.append(turn)
        return turns

    def tooling(self) -> common_pb2.Tooling | None:
        if not self.tools:
            return None
        return common_pb2.Tooling(
            tools=[
                common_pb2.Tool(
                    name=t.function.name,
                    description=t.function.description,
                    parameters=json.dumps(t.function.parameters) if t.function.parameters else "",
                )
                for t in self.tools
            ],
            choice=common_pb2.ToolChoice(mode=common_pb2.ToolChoice.MODE_AUTO),
        )


class OllamaGenerateRequest(_Generating):
    prompt: str = Field(
        default="", max_length=MAX_PROMPT_CHARS, description="Empty: the model is only checked."
    )
    system: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    raw: bool = Field(default=False, description="Send the prompt as is, without the model's turn template.")
    unsupported_fields = ("think", "tools", "images", "suffix", "template", "context")


EmbedText = Annotated[str, Field(min_length=1, max_length=MAX_EMBED_CHARS)]


class OllamaEmbedRequest(BaseModel):
    """`truncate`, `options` and `keep_alive` are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: ModelName
    input: EmbedText | Annotated[list[EmbedText], Field(min_length=1, max_length=MAX_EMBED_INPUTS)]

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> OllamaEmbedRequest:
        _refuse(self.model_extra or {}, ("dimensions",))
        return self

    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class OllamaEmbeddingsRequest(BaseModel):
    """The older, one-text embeddings request."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: ModelName
    prompt: EmbedText


class OllamaShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(default=None, min_length=1, max_length=128)
    # Ollama's older name for it.
    name: str | None = Field(default=None, min_length=1, max_length=128)

    @model_validator(mode="after")
    def _named(self) -> OllamaShowRequest:
        if not (self.model or self.name):
            raise field_error("model", "model is required", "missing")
        return self

    def model_name(self) -> str:
        return self.model or self.name or ""


class OllamaAssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    tool_calls: list[OllamaToolCall] | None = None


class _Done(BaseModel):
    """The fields of a finished answer (non-streamed, or the last line of a stream)."""

    model: str
    created_at: str
    done: bool = True
    done_reason: DoneReason | None = None
    total_duration: int | None = Field(default=None, description="Nanoseconds, as the gateway measured them.")
    prompt_eval_count: int | None = None
    eval_count: int | None = None


class OllamaChatResponse(_Done):
    message: OllamaAssistantMessage


class OllamaGenerateResponse(_Done):
    response: str


class OllamaEmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    prompt_eval_count: int


class OllamaEmbeddingsResponse(BaseModel):
    embedding: list[float]


class OllamaModelDetails(BaseModel):
    parent_model: str = ""
    format: str = Field(description="The backend serving it (llama_cpp, openai, ...), or route.")
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class OllamaListedModel(BaseModel):
    name: str
    model: str
    modified_at: str | None = None
    size: int = 0
    digest: str = ""
    details: OllamaModelDetails


class OllamaTags(BaseModel):
    models: list[OllamaListedModel]


class OllamaRunningModel(BaseModel):
    name: str
    model: str
    size: int = 0
    digest: str = ""
    details: OllamaModelDetails
    expires_at: str | None = None
    size_vram: int = 0
    context_length: int = 0


class OllamaRunning(BaseModel):
    models: list[OllamaRunningModel]


class OllamaShown(BaseModel):
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    details: OllamaModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str | None = None


class OllamaVersion(BaseModel):
    version: str

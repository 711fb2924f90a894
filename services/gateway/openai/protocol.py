"""Request and response schemas of the OpenAI-compatible API, as OpenAI's API reference defines them.

Fields the mesh cannot honour and that would change the answer (tools, logprobs, n > 1, ...) are
refused with 400 naming the field; fields that only tune sampling further (penalties, logit_bias,
user, metadata, ...) are accepted and ignored, as most OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from llmmesh.common.v1 import common_pb2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.results import FinishReason, Usage
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS
from services.gateway.knowledge.protocol import Hit

MAX_MESSAGES = 256
_ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "developer": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
}
ConversationId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Stop = str | Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=4)] | None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # "developer" is OpenAI's newer name for system instructions.
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)] | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def to_proto(self) -> common_pb2.ChatMessage:
        return common_pb2.ChatMessage(role=_ROLES[self.role], content=self.text())


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
    n: int = Field(default=1, ge=1, le=1, description="Only 1 is supported.")
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
            value = extra.get(name)
            if value not in (None, False, [], {}, "none", "auto", 0):
                raise ValueError(f"{name} is not supported by this server")
        return self


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    conversation_id: ConversationId | None = Field(
        default=None,
        description="LLM Mesh extension: keep this conversation's turns in the store, so a client sends "
        "only its new turn (also accepted as the X-Conversation-ID header).",
    )
    knowledge_bases: list[str] | None = Field(
        default=None,
        max_length=20,
        description="LLM Mesh extension: knowledge bases (vector store ids) the last user turn searches; "
        "the chunks found go into the prompt, numbered, and the response lists them as `sources`.",
    )
    knowledge_top_k: int = Field(default=5, ge=1, le=50, description="LLM Mesh extension: chunks retrieved.")
    unsupported_fields = ("tools", "functions", "logprobs", "top_logprobs", "audio", "prediction")

    @model_validator(mode="after")
    def _text_responses_only(self) -> ChatCompletionRequest:
        response_format = (self.model_extra or {}).get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
            raise ValueError("response_format other than text is not supported by this server")
        return self

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
    unsupported_fields = ("echo", "suffix", "logprobs", "best_of")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None
    # LLM Mesh extension: the knowledge base chunks the prompt was given, [1] first (knowledge_bases).
    sources: list[Hit] | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    system_fingerprint: str | None = None


EmbedText = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=128)
    input: EmbedText | Annotated[list[EmbedText], Field(min_length=1, max_length=256)] = Field(
        description="A text or a list of texts (token arrays are not supported)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, description="Not supported; must be left out.")

    @model_validator(mode="after")
    def _no_dimensions(self) -> EmbeddingRequest:
        if self.dimensions is not None:
            raise ValueError("dimensions is not supported by this server")
        return self

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


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

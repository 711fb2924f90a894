"""Transport for the Ollama API: Ollama's request and response shapes in, the same orchestrator calls
as every other front door out. Chat and generate stream by default, as Ollama does: one JSON object a
line (`application/x-ndjson`), the last with `done: true`; a failure midway is one `{"error": …}` line.

Model names are the registry's (routes included); Ollama's default tag `:latest` may be added to one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.errors import MeshError, ModelNotFound, UnsupportedTask, shown
from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, stream_timeout_s, while_connected
from services.gateway.errors import error_responses, ollama_error_body
from services.gateway.ollama.protocol import (
    DoneReason,
    OllamaAssistantMessage,
    OllamaChatRequest,
    OllamaChatResponse,
    OllamaEmbeddingsRequest,
    OllamaEmbeddingsResponse,
    OllamaEmbedRequest,
    OllamaEmbedResponse,
    OllamaFunctionCall,
    OllamaGenerateRequest,
    OllamaGenerateResponse,
    OllamaListedModel,
    OllamaModelDetails,
    OllamaRunning,
    OllamaRunningModel,
    OllamaShown,
    OllamaShowRequest,
    OllamaTags,
    OllamaToolCall,
    OllamaVersion,
)
from services.gateway.openai.protocol import arguments_object
from services.gateway.streaming import NDJSON, ndjson_from_stream


class _JsonBody(APIRoute):
    """Reads a body as JSON whatever its Content-Type, as Ollama does: its own examples post with
    `curl -d`, which labels the JSON as a form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def as_json(request: Request) -> Response:
            headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
            scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
            return await handle(Request(scope, request.receive))

        return as_json


router = APIRouter(prefix="/api", tags=["ollama"], route_class=_JsonBody)

_DEFAULT_TAG = ":latest"
_ERRORS = error_responses(
    descriptions={
        400: "A malformed request, an unsupported field (images, think, ...), or a prompt over the model's limit",
        401: "Missing or invalid API key (Authorization: Bearer)",
        404: "Unknown model or route",
        429: "The API key is over its rate limit (see Retry-After)",
        502: "The model provider failed",
        503: "The gateway is at its concurrency limit, or the mesh is unavailable",
    }
)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {NDJSON: {}},
        "description": "NDJSON lines (the default), or one JSON object when stream=false",
    }
}
# Ollama's capability names for the registry's tasks.
_CAPABILITIES = {"generate": "completion", "embed": "embedding"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _mesh_name(name: str) -> str:
    """The registry's name for an Ollama model name (`gemma-3-270m:latest` is `gemma-3-270m`)."""
    return name.removesuffix(_DEFAULT_TAG)


def _done_reason(result: common_pb2.GenerationResult) -> DoneReason:
    return "length" if result.finish_reason == common_pb2.FINISH_REASON_LENGTH else "stop"


def _chat_spec(body: OllamaChatRequest) -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(
        model=_mesh_name(body.model),
        messages=body.turns(),
        params=body.sampling(),
        tooling=body.tooling(),
        constraint=body.constraint(),
    )


def _generate_spec(body: OllamaGenerateRequest) -> orchestrator_pb2.GenerationSpec:
    return orchestrator_pb2.GenerationSpec(
        model=_mesh_name(body.model),
        system=body.system or "",
        prompt=body.prompt,
        raw=body.raw,
        params=body.sampling(),
        constraint=body.constraint(),
    )


class _Answer:
    """One chat or generate answer in Ollama's shape: the streamed lines, or the whole object."""

    def __init__(self, request: Request, model: str, chat: bool) -> None:
        self.request = request
        self.model = model
        self.chat = chat
        self.started_ns = time.perf_counter_ns()

    def text(self, text: str, calls: Sequence[common_pb2.ToolCall] = ()) -> dict[str, Any]:
        if self.chat:
            made = [
                OllamaToolCall(function=OllamaFunctionCall(name=c.name, arguments=arguments_object(c)))
                for c in calls
            ]
            message = OllamaAssistantMessage(content=text, tool_calls=made or None)
            return {"message": message.model_dump(exclude_none=True)}
        return {"response": text}

    def done(self, result: common_pb2.GenerationResult, text: str, with_calls: bool = True) -> dict[str, Any]:
        charge(self.request, result.usage)
        fields = {
            "model": self.model,
            "created_at": _now(),
            **self.text(text, result.tool_calls if with_calls else ()),
            "done": True,
            "done_reason": _done_reason(result),
            "total_duration": time.perf_counter_ns() - self.started_ns,
            "prompt_eval_count": result.usage.prompt_tokens,
            "eval_count": result.usage.completion_tokens,
        }
        return (
            (OllamaChatResponse if self.chat else OllamaGenerateResponse)
            .model_validate(fields)
            .model_dump(exclude_none=True)
        )

    def render(self, event: orchestrator_pb2.StreamGenerationResponse) -> list[dict[str, Any]]:
        if event.HasField("delta"):
            if not event.delta.text:
                return []
            return [{"model": self.model, "created_at": _now(), **self.text(event.delta.text), "done": False}]
        if event.HasField("tool_call"):
            return []  # Ollama streams a tool call whole: it goes out with the result
        lines = []
        if event.result.tool_calls:
            calls = self.text("", event.result.tool_calls)
            lines.append({"model": self.model, "created_at": _now(), **calls, "done": False})
        return [*lines, self.done(event.result, "", with_calls=False)]

    def render_error(self, error: MeshError, request_id: str) -> list[dict[str, Any]]:
        return [ollama_error_body(error.code, error.message, request_id)]


async def _answer(
    request: Request, spec: orchestrator_pb2.GenerationSpec, answer: _Answer, stream: bool
) -> Any:
    if stream:
        events = orchestrator(request).stream_generation(
            orchestrator_pb2.StreamGenerationRequest(spec=spec), stream_timeout_s(request)
        )
        return await ndjson_from_stream(request, events, answer.render, answer.render_error)
    response = await while_connected(
        request, orchestrator(request).run_generation(orchestrator_pb2.RunGenerationRequest(spec=spec))
    )
    return answer.done(response.result, response.result.text)


async def _routing(request: Request) -> orchestrator_pb2.DescribeRoutingResponse:
    return await orchestrator(request).describe_routing(orchestrator_pb2.DescribeRoutingRequest())


async def _loaded(request: Request, name: str, chat: bool) -> JSONResponse:
    """Ollama's answer to a request with nothing to generate: the model is there (`done_reason: load`)."""
    routing = await _routing(request)
    mesh_name = _mesh_name(name)
    model = next((m for m in routing.models if m.name == mesh_name), None)
    if model is None and mesh_name not in {r.name for r in routing.routes}:
        raise ModelNotFound(f"no model or route is named {shown(name)}")
    if model is not None and "generate" not in model.capabilities:
        raise UnsupportedTask(f"model {mesh_name} is an embedding model; it cannot generate")
    answer: dict[str, Any] = {"model": name, "created_at": _now()}
    answer.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    return JSONResponse({**answer, "done": True, "done_reason": "load"})


@router.post(
    "/chat",
    response_model=OllamaChatResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(generation_slot)],
    responses={**_ERRORS, **_STREAMED},
    summary="Chat (Ollama-compatible)",
)
async def chat(body: OllamaChatRequest, request: Request) -> Any:
    """Ollama's chat: the next assistant turn of `messages`, streamed as NDJSON unless `stream` is false."""
    if not body.messages:
        return await _loaded(request, body.model, chat=True)
    return await _answer(request, _chat_spec(body), _Answer(request, body.model, chat=True), body.stream)


@router.post(
    "/generate",
    response_model=OllamaGenerateResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(generation_slot)],
    responses={**_ERRORS, **_STREAMED},
    summary="Generate (Ollama-compatible)",
)
async def generate(body: OllamaGenerateRequest, request: Request) -> Any:
    """Ollama's generate: a completion of `prompt` (with `system`; `raw` skips the turn template),
    streamed as NDJSON unless `stream` is false."""
    if not body.prompt:
        return await _loaded(request, body.model, chat=False)
    return await _answer(request, _generate_spec(body), _Answer(request, body.model, chat=False), body.stream)


async def _embed(
    request: Request, model: str, inputs: list[str]
) -> orchestrator_pb2.CreateEmbeddingsResponse:
    answer = await orchestrator(request).create_embeddings(
        orchestrator_pb2.CreateEmbeddingsRequest(model=_mesh_name(model), inputs=inputs)
    )
    charge(request, answer.usage)
    return answer


@router.post(
    "/embed",
    response_model=OllamaEmbedResponse,
    dependencies=[Depends(generation_slot)],
    responses=_ERRORS,
    summary="Embed texts (Ollama-compatible)",
)
async def embed(body: OllamaEmbedRequest, request: Request) -> OllamaEmbedResponse:
    """One embedding vector per input, from an embedding model of the registry."""
    started = time.perf_counter_ns()
    answer = await _embed(request, body.model, body.inputs())
    return OllamaEmbedResponse(
        model=body.model,
        embeddings=[list(e.values) for e in answer.embeddings],
        total_duration=time.perf_counter_ns() - started,
        prompt_eval_count=answer.usage.prompt_tokens,
    )


@router.post(
    "/embeddings",
    response_model=OllamaEmbeddingsResponse,
    dependencies=[Depends(generation_slot)],
    responses=_ERRORS,
    summary="Embed one text (Ollama's older endpoint)",
)
async def embeddings(body: OllamaEmbeddingsRequest, request: Request) -> OllamaEmbeddingsResponse:
    answer = await _embed(request, body.model, [body.prompt])
    return OllamaEmbeddingsResponse(embedding=list(answer.embeddings[0].values))


def _model_details(backend: str) -> OllamaModelDetails:
    return OllamaModelDetails(format=backend)


def _listed(routing: orchestrator_pb2.DescribeRoutingResponse) -> list[OllamaListedModel]:
    """Every model of the registry, then every route not named like a model."""
    listed = [
        OllamaListedModel(name=m.name, model=m.name, details=_model_details(m.backend))
        for m in routing.models
    ]
    named = {m.name for m in routing.models}
    return listed + [
        OllamaListedModel(name=r.name, model=r.name, details=_model_details("route"))
        for r in routing.routes
        if r.name not in named
    ]


@router.get("/tags", response_model=OllamaTags, responses=_ERRORS, summary="List models (Ollama-compatible)")
async def tags(request: Request) -> OllamaTags:
    """Every model and route a request's `model` may name (details.format: the backend, or route)."""
    return OllamaTags(models=_listed(await _routing(request)))


@router.get(
    "/ps", response_model=OllamaRunning, responses=_ERRORS, summary="Loaded models (Ollama-compatible)"
)
async def running(request: Request) -> OllamaRunning:
    """The models loaded in their pools now."""
    routing = await _routing(request)
    return OllamaRunning(
        models=[
            OllamaRunningModel(
                name=m.name, model=m.name, details=_model_details(m.backend), context_length=m.context_length
            )
            for m in routing.models
            if m.loaded
        ]
    )


@router.post(
    "/show", response_model=OllamaShown, responses=_ERRORS, summary="Describe a model (Ollama-compatible)"
)
async def show(body: OllamaShowRequest, request: Request) -> OllamaShown:
    """A model's backend, pool, context window and capabilities, or a route's tiers."""
    routing = await _routing(request)
    name = _mesh_name(body.model_name())
    for model in routing.models:
        if model.name == name:
            info: dict[str, Any] = {"general.architecture": model.backend, "llm_mesh.pool": model.pool}
            if model.context_length:
                info[f"{model.backend}.context_length"] = model.context_length
            return OllamaShown(
                details=_model_details(model.backend),
                model_info=info,
                capabilities=[_CAPABILITIES[c] for c in model.capabilities if c in _CAPABILITIES],
            )
    for route in routing.routes:
        if route.name == name:
            tiers = [
                f"canned:{t.canned}" if t.HasField("canned") else f"model:{t.model}" for t in route.tiers
            ]
            return OllamaShown(
                details=_model_details("route"),
                model_info={"general.architecture": "route", "llm_mesh.route_tiers": tiers},
                capabilities=["completion"],
            )
    raise ModelNotFound(f"no model or route is named {shown(body.model_name())}")


@router.get(
    "/version", response_model=OllamaVersion, responses=_ERRORS, summary="Server version (Ollama-compatible)"
)
async def version(request: Request) -> OllamaVersion:
    """LLM Mesh's own version (not an Ollama version)."""
    return OllamaVersion(version=request.app.version)

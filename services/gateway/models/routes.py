"""Transport for GET /api/v1/models and POST /api/v1/ai/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator
from services.gateway.errors import error_responses, request_id_of
from services.gateway.models.protocol import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbeddingsUsage,
    ModelEntry,
    ModelLoad,
    ModelsResponse,
    RouteEntry,
    TierEntry,
)

router = APIRouter(tags=["models"])


def _load(load: common_pb2.ModelLoad) -> ModelLoad:
    return ModelLoad(
        running=load.running,
        waiting=load.waiting,
        window_s=load.window_s,
        generations=load.generations,
        failures=load.failures,
        mean_ttft_s=load.mean_ttft_s,
        mean_latency_s=load.mean_latency_s,
        tokens_per_s=load.tokens_per_s,
    )


@router.get(
    "/models", response_model=ModelsResponse, responses=error_responses(), summary="Models and routes"
)
async def list_models(request: Request) -> ModelsResponse:
    """Every model of the registry, whether it is loaded in its pool now, and every route with its tiers."""
    request_id = request_id_of(request)
    answer = await orchestrator(request).describe_routing(orchestrator_pb2.DescribeRoutingRequest())
    return ModelsResponse(
        models=[
            ModelEntry(
                name=m.name,
                backend=m.backend,
                pool=m.pool,
                capabilities=list(m.capabilities),
                loaded=m.loaded,
                pool_reachable=m.pool_reachable,
                context_length=m.context_length,
                load=_load(m.load) if m.HasField("load") else None,
            )
            for m in answer.models
        ],
        routes=[
            RouteEntry(
                name=r.name,
                tiers=[
                    TierEntry(kind="canned", name=t.canned)
                    if t.HasField("canned")
                    else TierEntry(kind="model", name=t.model)
                    for t in r.tiers
                ],
            )
            for r in answer.routes
        ],
        default_route=answer.default_route,
        request_id=request_id,
    )


@router.post(
    "/ai/embeddings",
    dependencies=[Depends(generation_slot)],
    response_model=EmbeddingsResponse,
    responses=error_responses(
        descriptions={
            400: "The model cannot make embeddings",
            404: "Unknown model",
            502: "The model provider failed",
        }
    ),
    summary="Embed texts",
)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    """One embedding vector per input text, from an embedding model (`task: embed` in the registry)."""
    inputs = body.inputs()
    request_id = request_id_of(request)
    answer = await orchestrator(request).create_embeddings(
        orchestrator_pb2.CreateEmbeddingsRequest(model=body.model, inputs=inputs)
    )
    charge(request, answer.usage)
    return EmbeddingsResponse(
        model=answer.model,
        embeddings=[list(e.values) for e in answer.embeddings],
        usage=EmbeddingsUsage(
            prompt_tokens=answer.usage.prompt_tokens, total_tokens=answer.usage.total_tokens
        ),
        request_id=request_id,
    )

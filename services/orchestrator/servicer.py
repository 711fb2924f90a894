"""OrchestratorService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
from llmmesh.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.orchestrator.generation import Generations


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, generations: Generations) -> None:
        self.generations = generations

    async def RunGeneration(
        self, request: orchestrator_pb2.RunGenerationRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunGenerationResponse:
        result = await self.generations.run(request.spec, context.time_remaining())
        return orchestrator_pb2.RunGenerationResponse(result=result)

    async def StreamGeneration(
        self, request: orchestrator_pb2.StreamGenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_pb2.StreamGenerationResponse]:
        async with aclosing(self.generations.stream(request.spec, context.time_remaining())) as events:
            async for event in events:
                if event.HasField("delta"):
                    yield orchestrator_pb2.StreamGenerationResponse(delta=event.delta)
                else:
                    yield orchestrator_pb2.StreamGenerationResponse(result=event.result)

"""OrchestratorService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.orchestrator.batches import Batches
from services.orchestrator.generations import Generations, embeddings
from services.orchestrator.jobs import Jobs
from services.orchestrator.knowledge import KnowledgeBases
from services.orchestrator.pipelines import Pipelines
from services.orchestrator.routing import Router
from services.orchestrator.sessions import SessionRuns


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """RunGeneration and StreamGeneration (through Generations); RunSession and StreamSession;
    CreateEmbeddings, DescribeRouting and CountTokens (the router); SubmitGeneration, SubmitSessionRun, GetJob,
    CancelJob and ListJobs (jobs); ListPipelines, StartPipelineRun, GetPipelineRun, ResumePipelineRun,
    CancelPipelineRun and ListPipelineRuns (pipelines); CreateKnowledgeBase, UpdateKnowledgeBase,
    AddKnowledgeDocument and SearchKnowledge (knowledge); CreateBatch (batches)."""

    def __init__(
        self,
        router: Router,
        generations: Generations,
        sessions: SessionRuns,
        jobs: Jobs,
        pipelines: Pipelines,
        knowledge: KnowledgeBases,
        batches: Batches,
    ) -> None:
        self.router = router
        self.generations = generations
        self.sessions = sessions
        self.jobs = jobs
        self.pipelines = pipelines
        self.knowledge = knowledge
        self.batches = batches

    async def RunGeneration(
        self, request: orchestrator_pb2.RunGenerationRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunGenerationResponse:
        return await self.generations.run(request.spec, context.time_remaining())

    async def StreamGeneration(
        self, request: orchestrator_pb2.StreamGenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_pb2.StreamGenerationResponse]:
        async with aclosing(self.generations.stream(request.spec, context.time_remaining())) as events:
            async for event in events:
                if isinstance(event, orchestrator_pb2.ResponseInfo):
                    yield orchestrator_pb2.StreamGenerationResponse(response=event)
                elif event.HasField("delta"):
                    yield orchestrator_pb2.StreamGenerationResponse(delta=event.delta)
                elif event.HasField("tool_call"):
                    yield orchestrator_pb2.StreamGenerationResponse(tool_call=event.tool_call)
                else:
                    yield orchestrator_pb2.StreamGenerationResponse(result=event.result)

    async def RunSession(
        self, request: orchestrator_pb2.RunSessionRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.RunSessionResponse:
        run = await self.sessions.run(
            request.session_code, request.force_regenerate, context.time_remaining(), request.sampling
        )
        return orchestrator_pb2.RunSessionResponse(run=run)

    async def StreamSession(
        self, request: orchestrator_pb2.StreamSessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_pb2.StreamSessionResponse]:
        events = self.sessions.stream(
            request.session_code,
            request.force_regenerate,
            context.time_remaining(),
            sampling=request.sampling,
        )
        async with aclosing(events):
            async for event in events:
                if isinstance(event, orchestrator_pb2.SessionRun):
                    yield orchestrator_pb2.StreamSessionResponse(run=event)
                else:
                    yield orchestrator_pb2.StreamSessionResponse(delta=event)

    async def CreateEmbeddings(
        self, request: orchestrator_pb2.CreateEmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CreateEmbeddingsResponse:
        return await embeddings(self.router, request.model, list(request.inputs))

    async def DescribeRouting(
        self, request: orchestrator_pb2.DescribeRoutingRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.DescribeRoutingResponse:
        return await self.router.describe()

    async def CountTokens(
        self, request: orchestrator_pb2.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CountTokensResponse:
        counted = await self.router.count_tokens(request.spec, context.time_remaining())
        return orchestrator_pb2.CountTokensResponse(prompt_tokens=counted.prompt_tokens, model=counted.model)

    async def CreateBatch(
        self, request: orchestrator_pb2.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CreateBatchResponse:
        return orchestrator_pb2.CreateBatchResponse(batch_id=await self.batches.create(request))

    async def SubmitGeneration(
        self, request: orchestrator_pb2.SubmitGenerationRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.SubmitGenerationResponse:
        job, created = await self.jobs.submit_generation(request.spec, request.options)
        return orchestrator_pb2.SubmitGenerationResponse(job=job, created=created)

    async def SubmitSessionRun(
        self, request: orchestrator_pb2.SubmitSessionRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.SubmitSessionRunResponse:
        job, created = await self.jobs.submit_session_run(
            request.session_code, request.force_regenerate, request.options, request.sampling
        )
        return orchestrator_pb2.SubmitSessionRunResponse(job=job, created=created)

    async def GetJob(
        self, request: orchestrator_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.GetJobResponse:
        return orchestrator_pb2.GetJobResponse(job=await self.jobs.get(request.job_id))

    async def CancelJob(
        self, request: orchestrator_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CancelJobResponse:
        return orchestrator_pb2.CancelJobResponse(job=await self.jobs.cancel(request.job_id))

    async def ListPipelines(
        self, request: orchestrator_pb2.ListPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListPipelinesResponse:
        return self.pipelines.describe()

    async def StartPipelineRun(
        self, request: orchestrator_pb2.StartPipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.StartPipelineRunResponse:
        run, created = await self.pipelines.start(request.pipeline, request.input_json, request.options)
        return orchestrator_pb2.StartPipelineRunResponse(run=run, created=created)

    async def GetPipelineRun(
        self, request: orchestrator_pb2.GetPipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.GetPipelineRunResponse:
        return orchestrator_pb2.GetPipelineRunResponse(run=await self.pipelines.get(request.run_id))

    async def ResumePipelineRun(
        self, request: orchestrator_pb2.ResumePipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ResumePipelineRunResponse:
        return orchestrator_pb2.ResumePipelineRunResponse(run=await self.pipelines.resume(request.run_id))

    async def CancelPipelineRun(
        self, request: orchestrator_pb2.CancelPipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CancelPipelineRunResponse:
        return orchestrator_pb2.CancelPipelineRunResponse(run=await self.pipelines.cancel(request.run_id))

    async def ListJobs(
        self, request: orchestrator_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListJobsResponse:
        return await self.jobs.recent(request)

    async def ListPipelineRuns(
        self, request: orchestrator_pb2.ListPipelineRunsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListPipelineRunsResponse:
        return await self.pipelines.recent(request)

    async def CreateKnowledgeBase(
        self, request: orchestrator_pb2.CreateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.CreateKnowledgeBaseResponse:
        return orchestrator_pb2.CreateKnowledgeBaseResponse(
            knowledge_base_id=await self.knowledge.create(request)
        )

    async def UpdateKnowledgeBase(
        self, request: orchestrator_pb2.UpdateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.UpdateKnowledgeBaseResponse:
        return orchestrator_pb2.UpdateKnowledgeBaseResponse(job_ids=await self.knowledge.update(request))

    async def AddKnowledgeDocument(
        self, request: orchestrator_pb2.AddKnowledgeDocumentRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.AddKnowledgeDocumentResponse:
        return await self.knowledge.add_document(request)

    async def SearchKnowledge(
        self, request: orchestrator_pb2.SearchKnowledgeRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.SearchKnowledgeResponse:
        hits = await self.knowledge.search(
            request.knowledge_base_ids,
            request.query,
            request.mode,
            request.top_k,
            request.filter_json,
            request.exact,
        )
        return orchestrator_pb2.SearchKnowledgeResponse(hits=hits)

"""The orchestrator's typed client: one method per OrchestratorService RPC (see services/common/client.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.common.client import ServiceClient

# Its health status says whether the orchestrator can serve a request now, its dependencies included.
SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


class OrchestratorClient(ServiceClient):
    """Calls the OrchestratorService over one channel: the request id and trace context travel in
    metadata, and every failure arrives as the mesh's own error."""

    stub_class = orchestrator_pb2_grpc.OrchestratorServiceStub

    async def run_generation(
        self, request: orchestrator_pb2.RunGenerationRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.RunGenerationResponse:
        """Runs a generation to completion and returns the whole result."""
        return await self._unary(self._stub.RunGeneration, request, timeout_s)

    def stream_generation(
        self, request: orchestrator_pb2.StreamGenerationRequest, timeout_s: float | None
    ) -> AsyncGenerator[orchestrator_pb2.StreamGenerationResponse, None]:
        """Runs a generation and relays token deltas as they are produced, then the final result."""
        return self._stream(self._stub.StreamGeneration, request, timeout_s)

    async def run_session(
        self, request: orchestrator_pb2.RunSessionRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.RunSessionResponse:
        """Turns a session's answers into its LLM result: rendered from the session's template version, reused from the store when the inputs have not changed, else generated and stored."""
        return await self._unary(self._stub.RunSession, request, timeout_s)

    def stream_session(
        self, request: orchestrator_pb2.StreamSessionRequest, timeout_s: float | None
    ) -> AsyncGenerator[orchestrator_pb2.StreamSessionResponse, None]:
        """RunSession, relaying token deltas while a new result is generated."""
        return self._stream(self._stub.StreamSession, request, timeout_s)

    async def create_embeddings(
        self, request: orchestrator_pb2.CreateEmbeddingsRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CreateEmbeddingsResponse:
        """Embedding vectors from the named embedding model."""
        return await self._unary(self._stub.CreateEmbeddings, request, timeout_s)

    async def describe_routing(
        self, request: orchestrator_pb2.DescribeRoutingRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.DescribeRoutingResponse:
        """Every model of the registry (with whether it is loaded) and every route."""
        return await self._unary(self._stub.DescribeRouting, request, timeout_s)

    async def count_tokens(
        self, request: orchestrator_pb2.CountTokensRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CountTokensResponse:
        """The prompt tokens a generation would have on the model that serves it first (a route's first model tier), by that model's tokenizer and turn template; nothing is generated."""
        return await self._unary(self._stub.CountTokens, request, timeout_s)

    async def create_batch(
        self, request: orchestrator_pb2.CreateBatchRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CreateBatchResponse:
        """Queues a batch of the Batch API, a job per line (a line that cannot run is failed at once)."""
        return await self._unary(self._stub.CreateBatch, request, timeout_s)

    async def submit_generation(
        self, request: orchestrator_pb2.SubmitGenerationRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.SubmitGenerationResponse:
        """Queues a generation as a durable job (checked first, so a bad request fails now, not later)."""
        return await self._unary(self._stub.SubmitGeneration, request, timeout_s)

    async def submit_session_run(
        self, request: orchestrator_pb2.SubmitSessionRunRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.SubmitSessionRunResponse:
        """Queues a session run as a durable job."""
        return await self._unary(self._stub.SubmitSessionRun, request, timeout_s)

    async def get_job(
        self, request: orchestrator_pb2.GetJobRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.GetJobResponse:
        """A job's status, with its webhook's delivery when it has one."""
        return await self._unary(self._stub.GetJob, request, timeout_s)

    async def cancel_job(
        self, request: orchestrator_pb2.CancelJobRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CancelJobResponse:
        """Cancels a QUEUED or RUNNING job (a running one stops at its worker's next lease renewal)."""
        return await self._unary(self._stub.CancelJob, request, timeout_s)

    async def list_pipelines(
        self, request: orchestrator_pb2.ListPipelinesRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.ListPipelinesResponse:
        """The pipelines of the registry, with their steps."""
        return await self._unary(self._stub.ListPipelines, request, timeout_s)

    async def start_pipeline_run(
        self, request: orchestrator_pb2.StartPipelineRunRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.StartPipelineRunResponse:
        """Starts a run of a pipeline: its first step is queued; each finished step queues the next."""
        return await self._unary(self._stub.StartPipelineRun, request, timeout_s)

    async def get_pipeline_run(
        self, request: orchestrator_pb2.GetPipelineRunRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.GetPipelineRunResponse:
        """A run with every step's job and whether it is stalled."""
        return await self._unary(self._stub.GetPipelineRun, request, timeout_s)

    async def resume_pipeline_run(
        self, request: orchestrator_pb2.ResumePipelineRunRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.ResumePipelineRunResponse:
        """Runs a FAILED run again from its failed step."""
        return await self._unary(self._stub.ResumePipelineRun, request, timeout_s)

    async def cancel_pipeline_run(
        self, request: orchestrator_pb2.CancelPipelineRunRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CancelPipelineRunResponse:
        """Cancels a run and its queued or running step."""
        return await self._unary(self._stub.CancelPipelineRun, request, timeout_s)

    async def list_jobs(
        self, request: orchestrator_pb2.ListJobsRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.ListJobsResponse:
        """One page of the caller's project's jobs, newest first, optionally of some kinds and statuses."""
        return await self._unary(self._stub.ListJobs, request, timeout_s)

    async def list_pipeline_runs(
        self, request: orchestrator_pb2.ListPipelineRunsRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.ListPipelineRunsResponse:
        """One page of the caller's project's pipeline runs, newest first, with every step's job."""
        return await self._unary(self._stub.ListPipelineRuns, request, timeout_s)

    async def create_knowledge_base(
        self, request: orchestrator_pb2.CreateKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.CreateKnowledgeBaseResponse:
        """A knowledge base whose model embeds (not_an_embedding_model otherwise)."""
        return await self._unary(self._stub.CreateKnowledgeBase, request, timeout_s)

    async def update_knowledge_base(
        self, request: orchestrator_pb2.UpdateKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.UpdateKnowledgeBaseResponse:
        """Renames it, or queues re-embedding with a new model."""
        return await self._unary(self._stub.UpdateKnowledgeBase, request, timeout_s)

    async def add_knowledge_document(
        self, request: orchestrator_pb2.AddKnowledgeDocumentRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.AddKnowledgeDocumentResponse:
        """A document from a file or text, read now and indexed by a job."""
        return await self._unary(self._stub.AddKnowledgeDocument, request, timeout_s)

    async def search_knowledge(
        self, request: orchestrator_pb2.SearchKnowledgeRequest, timeout_s: float | None = None
    ) -> orchestrator_pb2.SearchKnowledgeResponse:
        """Top chunks of knowledge bases for a query."""
        return await self._unary(self._stub.SearchKnowledge, request, timeout_s)

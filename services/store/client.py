"""The store's typed client: one method per StoreService RPC (see services/common/client.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.client import ServiceClient


class StoreClient(ServiceClient):
    """Calls the StoreService over one channel: the request id and trace context travel in
    metadata, and every failure arrives as the mesh's own error."""

    stub_class = store_pb2_grpc.StoreServiceStub
    # The store answers from its database; anything slower than this is a store in trouble.
    default_timeout_s = 10.0

    async def describe_store(
        self, request: store_pb2.DescribeStoreRequest, timeout_s: float | None = None
    ) -> store_pb2.DescribeStoreResponse:
        """Which database the store runs on and the schema revision it has applied."""
        return await self._unary(self._stub.DescribeStore, request, timeout_s)

    async def create_template(
        self, request: store_pb2.CreateTemplateRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateTemplateResponse:
        """A new template, without versions yet (ALREADY_EXISTS when the name is taken)."""
        return await self._unary(self._stub.CreateTemplate, request, timeout_s)

    async def get_template(
        self, request: store_pb2.GetTemplateRequest, timeout_s: float | None = None
    ) -> store_pb2.GetTemplateResponse:
        """A template with all its versions."""
        return await self._unary(self._stub.GetTemplate, request, timeout_s)

    async def get_version(
        self, request: store_pb2.GetVersionRequest, timeout_s: float | None = None
    ) -> store_pb2.GetVersionResponse:
        """One version of a template, by number."""
        return await self._unary(self._stub.GetVersion, request, timeout_s)

    async def add_version(
        self, request: store_pb2.AddVersionRequest, timeout_s: float | None = None
    ) -> store_pb2.AddVersionResponse:
        """A new DRAFT version, numbered after the template's newest."""
        return await self._unary(self._stub.AddVersion, request, timeout_s)

    async def set_version_status(
        self, request: store_pb2.SetVersionStatusRequest, timeout_s: float | None = None
    ) -> store_pb2.SetVersionStatusResponse:
        """DRAFT → PUBLISHED → ARCHIVED (or DRAFT → ARCHIVED); never backwards."""
        return await self._unary(self._stub.SetVersionStatus, request, timeout_s)

    async def create_session(
        self, request: store_pb2.CreateSessionRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateSessionResponse:
        """A session bound to one PUBLISHED version (the newest unless a number is given)."""
        return await self._unary(self._stub.CreateSession, request, timeout_s)

    async def put_answers(
        self, request: store_pb2.PutAnswersRequest, timeout_s: float | None = None
    ) -> store_pb2.PutAnswersResponse:
        """Replaces the session's answers with the given ones."""
        return await self._unary(self._stub.PutAnswers, request, timeout_s)

    async def get_session(
        self, request: store_pb2.GetSessionRequest, timeout_s: float | None = None
    ) -> store_pb2.GetSessionResponse:
        """The session with its version, answers and latest result: everything a run needs."""
        return await self._unary(self._stub.GetSession, request, timeout_s)

    async def save_session_result(
        self, request: store_pb2.SaveSessionResultRequest, timeout_s: float | None = None
    ) -> store_pb2.SaveSessionResultResponse:
        """Stores a session's LLM result, replacing the previous one."""
        return await self._unary(self._stub.SaveSessionResult, request, timeout_s)

    async def enqueue_job(
        self, request: store_pb2.EnqueueJobRequest, timeout_s: float | None = None
    ) -> store_pb2.EnqueueJobResponse:
        """Adds a job to the queue; with an idempotency key already used, returns that job instead."""
        return await self._unary(self._stub.EnqueueJob, request, timeout_s)

    async def get_job(
        self, request: store_pb2.GetJobRequest, timeout_s: float | None = None
    ) -> store_pb2.GetJobResponse:
        """A job as the queue holds it."""
        return await self._unary(self._stub.GetJob, request, timeout_s)

    async def cancel_job(
        self, request: store_pb2.CancelJobRequest, timeout_s: float | None = None
    ) -> store_pb2.CancelJobResponse:
        """Cancels a QUEUED or RUNNING job (its worker notices at its next lease renewal)."""
        return await self._unary(self._stub.CancelJob, request, timeout_s)

    async def claim_jobs(
        self, request: store_pb2.ClaimJobsRequest, timeout_s: float | None = None
    ) -> store_pb2.ClaimJobsResponse:
        """Leases up to `limit` runnable jobs to a worker: QUEUED ones that are due, and RUNNING ones whose lease expired. Each claim counts as an attempt."""
        return await self._unary(self._stub.ClaimJobs, request, timeout_s)

    async def renew_leases(
        self, request: store_pb2.RenewLeasesRequest, timeout_s: float | None = None
    ) -> store_pb2.RenewLeasesResponse:
        """Extends the leases a worker still holds; the answer lists them, so the worker stops the rest."""
        return await self._unary(self._stub.RenewLeases, request, timeout_s)

    async def complete_jobs(
        self, request: store_pb2.CompleteJobsRequest, timeout_s: float | None = None
    ) -> store_pb2.CompleteJobsResponse:
        """Records jobs' results in one transaction: how a worker reports its completions, batched while a previous batch is in flight. Idempotent: a job that already ended keeps its first outcome."""
        return await self._unary(self._stub.CompleteJobs, request, timeout_s)

    async def fail_job(
        self, request: store_pb2.FailJobRequest, timeout_s: float | None = None
    ) -> store_pb2.FailJobResponse:
        """Records a failed attempt: requeued after retry_after_s while attempts remain, else FAILED."""
        return await self._unary(self._stub.FailJob, request, timeout_s)

    async def release_jobs(
        self, request: store_pb2.ReleaseJobsRequest, timeout_s: float | None = None
    ) -> store_pb2.ReleaseJobsResponse:
        """Gives leased jobs back without counting the attempt (a worker shutting down)."""
        return await self._unary(self._stub.ReleaseJobs, request, timeout_s)

    def watch_jobs(
        self, request: store_pb2.WatchJobsRequest, timeout_s: float | None
    ) -> AsyncGenerator[store_pb2.WatchJobsResponse, None]:
        """One message now and one each time jobs may have become runnable, so workers need not poll."""
        return self._stream(self._stub.WatchJobs, request, timeout_s)

    async def create_pipeline_run(
        self, request: store_pb2.CreatePipelineRunRequest, timeout_s: float | None = None
    ) -> store_pb2.CreatePipelineRunResponse:
        """A pipeline run and the job of its first step, in one transaction."""
        return await self._unary(self._stub.CreatePipelineRun, request, timeout_s)

    async def get_pipeline_run(
        self, request: store_pb2.GetPipelineRunRequest, timeout_s: float | None = None
    ) -> store_pb2.GetPipelineRunResponse:
        """The run with the latest job of each step it has reached."""
        return await self._unary(self._stub.GetPipelineRun, request, timeout_s)

    async def resume_pipeline_run(
        self, request: store_pb2.ResumePipelineRunRequest, timeout_s: float | None = None
    ) -> store_pb2.ResumePipelineRunResponse:
        """Queues the failed step of a FAILED run again; the steps that succeeded keep their results."""
        return await self._unary(self._stub.ResumePipelineRun, request, timeout_s)

    async def cancel_pipeline_run(
        self, request: store_pb2.CancelPipelineRunRequest, timeout_s: float | None = None
    ) -> store_pb2.CancelPipelineRunResponse:
        """Cancels a run and its queued or running step."""
        return await self._unary(self._stub.CancelPipelineRun, request, timeout_s)

    async def create_api_key(
        self, request: store_pb2.CreateApiKeyRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateApiKeyResponse:
        """A new API key; its secret is returned once and only its hash is kept."""
        return await self._unary(self._stub.CreateApiKey, request, timeout_s)

    async def list_api_keys(
        self, request: store_pb2.ListApiKeysRequest, timeout_s: float | None = None
    ) -> store_pb2.ListApiKeysResponse:
        """The API keys of one project or of all, revoked ones included (never their secrets)."""
        return await self._unary(self._stub.ListApiKeys, request, timeout_s)

    async def revoke_api_key(
        self, request: store_pb2.RevokeApiKeyRequest, timeout_s: float | None = None
    ) -> store_pb2.RevokeApiKeyResponse:
        """Revoked keys stop authenticating; the record stays for audit."""
        return await self._unary(self._stub.RevokeApiKey, request, timeout_s)

    async def verify_api_key(
        self, request: store_pb2.VerifyApiKeyRequest, timeout_s: float | None = None
    ) -> store_pb2.VerifyApiKeyResponse:
        """The key whose secret this is (constant-time comparison); UNAUTHENTICATED when none is."""
        return await self._unary(self._stub.VerifyApiKey, request, timeout_s)

    async def create_project(
        self, request: store_pb2.CreateProjectRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateProjectResponse:
        """A new project (tenant) for API keys to belong to."""
        return await self._unary(self._stub.CreateProject, request, timeout_s)

    async def list_projects(
        self, request: store_pb2.ListProjectsRequest, timeout_s: float | None = None
    ) -> store_pb2.ListProjectsResponse:
        """Every project, oldest first."""
        return await self._unary(self._stub.ListProjects, request, timeout_s)

    async def get_conversation(
        self, request: store_pb2.GetConversationRequest, timeout_s: float | None = None
    ) -> store_pb2.GetConversationResponse:
        """A conversation's stored turns, oldest first (NOT_FOUND when it has none)."""
        return await self._unary(self._stub.GetConversation, request, timeout_s)

    async def append_conversation(
        self, request: store_pb2.AppendConversationRequest, timeout_s: float | None = None
    ) -> store_pb2.AppendConversationResponse:
        """Appends turns to a conversation, creating it on first use."""
        return await self._unary(self._stub.AppendConversation, request, timeout_s)

    async def delete_conversation(
        self, request: store_pb2.DeleteConversationRequest, timeout_s: float | None = None
    ) -> store_pb2.DeleteConversationResponse:
        """Forgets a conversation's turns (NOT_FOUND when it has none)."""
        return await self._unary(self._stub.DeleteConversation, request, timeout_s)

    async def create_stored_response(
        self, request: store_pb2.CreateStoredResponseRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateStoredResponseResponse:
        """Stores a response of the Responses API with its input, giving it and its items their ids."""
        return await self._unary(self._stub.CreateStoredResponse, request, timeout_s)

    async def finish_stored_response(
        self, request: store_pb2.FinishStoredResponseRequest, timeout_s: float | None = None
    ) -> store_pb2.FinishStoredResponseResponse:
        """Records how an IN_PROGRESS response ended (FAILED_PRECONDITION once it has ended)."""
        return await self._unary(self._stub.FinishStoredResponse, request, timeout_s)

    async def get_stored_response(
        self, request: store_pb2.GetStoredResponseRequest, timeout_s: float | None = None
    ) -> store_pb2.GetStoredResponseResponse:
        """A stored response, without its input (list_response_input_items pages through that)."""
        return await self._unary(self._stub.GetStoredResponse, request, timeout_s)

    async def get_response_chain(
        self, request: store_pb2.GetResponseChainRequest, timeout_s: float | None = None
    ) -> store_pb2.GetResponseChainResponse:
        """A stored response and every response it continued, oldest first, each with its input."""
        return await self._unary(self._stub.GetResponseChain, request, timeout_s)

    async def delete_stored_response(
        self, request: store_pb2.DeleteStoredResponseRequest, timeout_s: float | None = None
    ) -> store_pb2.DeleteStoredResponseResponse:
        """Forgets a stored response and its input; a response that continued it keeps its own."""
        return await self._unary(self._stub.DeleteStoredResponse, request, timeout_s)

    async def list_response_input_items(
        self, request: store_pb2.ListResponseInputItemsRequest, timeout_s: float | None = None
    ) -> store_pb2.ListResponseInputItemsResponse:
        """One page of a stored response's input items."""
        return await self._unary(self._stub.ListResponseInputItems, request, timeout_s)

    async def list_jobs(
        self, request: store_pb2.ListJobsRequest, timeout_s: float | None = None
    ) -> store_pb2.ListJobsResponse:
        """One page of the project's jobs, newest first, optionally of some kinds and statuses only."""
        return await self._unary(self._stub.ListJobs, request, timeout_s)

    async def list_pipeline_runs(
        self, request: store_pb2.ListPipelineRunsRequest, timeout_s: float | None = None
    ) -> store_pb2.ListPipelineRunsResponse:
        """One page of the project's pipeline runs, newest first, each with its steps' jobs."""
        return await self._unary(self._stub.ListPipelineRuns, request, timeout_s)

    async def list_templates(
        self, request: store_pb2.ListTemplatesRequest, timeout_s: float | None = None
    ) -> store_pb2.ListTemplatesResponse:
        """One page of the project's templates in name order, each with all its versions."""
        return await self._unary(self._stub.ListTemplates, request, timeout_s)

    async def update_draft_version(
        self, request: store_pb2.UpdateDraftVersionRequest, timeout_s: float | None = None
    ) -> store_pb2.UpdateDraftVersionResponse:
        """Replaces a DRAFT version's content; a PUBLISHED or ARCHIVED version is final."""
        return await self._unary(self._stub.UpdateDraftVersion, request, timeout_s)

    async def create_file(
        self, request: store_pb2.CreateFileRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateFileResponse:
        """A stored upload (bytes kept in the database, in the caller's project)."""
        return await self._unary(self._stub.CreateFile, request, timeout_s)

    async def list_files(
        self, request: store_pb2.ListFilesRequest, timeout_s: float | None = None
    ) -> store_pb2.ListFilesResponse:
        """One page of the project's files, newest first unless ascending."""
        return await self._unary(self._stub.ListFiles, request, timeout_s)

    async def get_file(
        self, request: store_pb2.GetFileRequest, timeout_s: float | None = None
    ) -> store_pb2.GetFileResponse:
        """A file's record, without its bytes."""
        return await self._unary(self._stub.GetFile, request, timeout_s)

    async def get_file_content(
        self, request: store_pb2.GetFileContentRequest, timeout_s: float | None = None
    ) -> store_pb2.GetFileContentResponse:
        """A file's record and its bytes."""
        return await self._unary(self._stub.GetFileContent, request, timeout_s)

    async def delete_file(
        self, request: store_pb2.DeleteFileRequest, timeout_s: float | None = None
    ) -> store_pb2.DeleteFileResponse:
        """Forgets a file (documents made from it stay)."""
        return await self._unary(self._stub.DeleteFile, request, timeout_s)

    async def create_knowledge_base(
        self, request: store_pb2.CreateKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateKnowledgeBaseResponse:
        """A new, empty knowledge base."""
        return await self._unary(self._stub.CreateKnowledgeBase, request, timeout_s)

    async def list_knowledge_bases(
        self, request: store_pb2.ListKnowledgeBasesRequest, timeout_s: float | None = None
    ) -> store_pb2.ListKnowledgeBasesResponse:
        """One page of the project's knowledge bases."""
        return await self._unary(self._stub.ListKnowledgeBases, request, timeout_s)

    async def get_knowledge_base(
        self, request: store_pb2.GetKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> store_pb2.GetKnowledgeBaseResponse:
        """A knowledge base with its documents counted by status."""
        return await self._unary(self._stub.GetKnowledgeBase, request, timeout_s)

    async def update_knowledge_base(
        self, request: store_pb2.UpdateKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> store_pb2.UpdateKnowledgeBaseResponse:
        """Renames it, or a new model starts a new generation."""
        return await self._unary(self._stub.UpdateKnowledgeBase, request, timeout_s)

    async def delete_knowledge_base(
        self, request: store_pb2.DeleteKnowledgeBaseRequest, timeout_s: float | None = None
    ) -> store_pb2.DeleteKnowledgeBaseResponse:
        """Deletes it with its documents (FAILED_PRECONDITION while indexing, unless forced)."""
        return await self._unary(self._stub.DeleteKnowledgeBase, request, timeout_s)

    async def add_document(
        self, request: store_pb2.AddDocumentRequest, timeout_s: float | None = None
    ) -> store_pb2.AddDocumentResponse:
        """A document by its text; the same text again returns the one there (created = false)."""
        return await self._unary(self._stub.AddDocument, request, timeout_s)

    async def set_document_job(
        self, request: store_pb2.SetDocumentJobRequest, timeout_s: float | None = None
    ) -> store_pb2.SetDocumentJobResponse:
        """Records the ingestion job of a document."""
        return await self._unary(self._stub.SetDocumentJob, request, timeout_s)

    async def list_documents(
        self, request: store_pb2.ListDocumentsRequest, timeout_s: float | None = None
    ) -> store_pb2.ListDocumentsResponse:
        """One page of a knowledge base's documents."""
        return await self._unary(self._stub.ListDocuments, request, timeout_s)

    async def create_file_batch(
        self, request: store_pb2.CreateFileBatchRequest, timeout_s: float | None = None
    ) -> store_pb2.CreateFileBatchResponse:
        """A batch of files attached to a knowledge base, with its documents counted by status."""
        return await self._unary(self._stub.CreateFileBatch, request, timeout_s)

    async def get_file_batch(
        self, request: store_pb2.GetFileBatchRequest, timeout_s: float | None = None
    ) -> store_pb2.GetFileBatchResponse:
        return await self._unary(self._stub.GetFileBatch, request, timeout_s)

    async def cancel_file_batch(
        self, request: store_pb2.CancelFileBatchRequest, timeout_s: float | None = None
    ) -> store_pb2.CancelFileBatchResponse:
        """Mark a file batch cancelled; its answer names the ingestion jobs still to stop."""
        return await self._unary(self._stub.CancelFileBatch, request, timeout_s)

    async def get_document(
        self, request: store_pb2.GetDocumentRequest, timeout_s: float | None = None
    ) -> store_pb2.GetDocumentResponse:
        """A document and its indexing status."""
        return await self._unary(self._stub.GetDocument, request, timeout_s)

    async def delete_document(
        self, request: store_pb2.DeleteDocumentRequest, timeout_s: float | None = None
    ) -> store_pb2.DeleteDocumentResponse:
        """Deletes a document and its chunks."""
        return await self._unary(self._stub.DeleteDocument, request, timeout_s)

    async def get_indexing_work(
        self, request: store_pb2.GetIndexingWorkRequest, timeout_s: float | None = None
    ) -> store_pb2.GetIndexingWorkResponse:
        """What an ingestion job needs: text, generation, model, chunking, progress."""
        return await self._unary(self._stub.GetIndexingWork, request, timeout_s)

    async def put_chunks(
        self, request: store_pb2.PutChunksRequest, timeout_s: float | None = None
    ) -> store_pb2.PutChunksResponse:
        """Writes hidden chunks; positions already written are kept."""
        return await self._unary(self._stub.PutChunks, request, timeout_s)

    async def finish_document(
        self, request: store_pb2.FinishDocumentRequest, timeout_s: float | None = None
    ) -> store_pb2.FinishDocumentResponse:
        """Shows a document's chunks at once, when all are written."""
        return await self._unary(self._stub.FinishDocument, request, timeout_s)

    async def fail_document(
        self, request: store_pb2.FailDocumentRequest, timeout_s: float | None = None
    ) -> store_pb2.FailDocumentResponse:
        """Records why a document's indexing failed."""
        return await self._unary(self._stub.FailDocument, request, timeout_s)

    async def search_chunks(
        self, request: store_pb2.SearchChunksRequest, timeout_s: float | None = None
    ) -> store_pb2.SearchChunksResponse:
        """Top chunks by vector, full text or hybrid."""
        return await self._unary(self._stub.SearchChunks, request, timeout_s)

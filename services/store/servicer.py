"""StoreService gRPC adapter: protobuf in, repository call, protobuf out."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.enums import (
    FINISH_REASON_NAMES,
    FINISH_REASON_VALUES,
    JOB_KIND_NAMES,
    JOB_KIND_VALUES,
    JOB_STATUS_NAMES,
    JOB_STATUS_VALUES,
    PIPELINE_RUN_STATUS_NAMES,
    PIPELINE_RUN_STATUS_VALUES,
    RESPONSE_STATUS_NAMES,
    RESPONSE_STATUS_VALUES,
    ROLE_NAMES,
    ROLE_VALUES,
    VERSION_STATUS_NAMES,
    VERSION_STATUS_VALUES,
)
from services.common.tenancy import DEFAULT_PROJECT, current_project
from services.store import tables
from services.store.api_keys import ApiKeys
from services.store.batches import BatchView
from services.store.conversations import Conversations, Turn
from services.store.errors import InvalidStoreRequest
from services.store.knowledge import (
    FileBatchView,
    Hit,
    Knowledge,
    KnowledgeBaseView,
    NewChunk,
    SearchQuery,
    metadata_json,
)
from services.store.queue import Completion, JobQueue, Lease, NewBatch, NewJob, RunView
from services.store.repository import (
    NewAnswer,
    NewResult,
    Repository,
    ResultView,
    SessionView,
    VersionView,
)
from services.store.responses import Call, NewItem, NewResponse, Outcome, StoredResponses

_OPTION_FIELDS = ("model", "max_tokens", "temperature", "top_p", "seed")


log = logging.getLogger("llmmesh.store.servicer")


def _role_name(role: common_pb2.Role) -> str:
    name = ROLE_NAMES.get(role)
    if name is None:
        raise InvalidStoreRequest("every stored message needs a role: system, user, assistant or tool")
    return name


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _options_to_json(options: store_pb2.LlmOptions) -> dict[str, Any]:
    data: dict[str, Any] = {"model": options.model, "max_tokens": options.max_tokens}
    for name in ("temperature", "top_p", "seed"):
        if options.HasField(name):
            data[name] = getattr(options, name)
    if options.stop:
        data["stop"] = list(options.stop)
    if options.knowledge_bases:
        data["knowledge_bases"] = list(options.knowledge_bases)
    if options.HasField("json_schema"):
        data["json_schema"] = _json_value(options.json_schema, "llm_options.json_schema")
    return data


def _json_value(text: str, field: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidStoreRequest(f"{field} is not JSON") from None


def _options_to_proto(data: dict[str, Any]) -> store_pb2.LlmOptions:
    return store_pb2.LlmOptions(
        **{k: data[k] for k in _OPTION_FIELDS if data.get(k) is not None},
        stop=data.get("stop", []),
        knowledge_bases=data.get("knowledge_bases", []),
        json_schema=None if data.get("json_schema") is None else json.dumps(data["json_schema"]),
    )


def version_to_proto(version: tables.TemplateVersion | VersionView) -> store_pb2.TemplateVersion:
    return store_pb2.TemplateVersion(
        id=version.id,
        template_name=version.template_name,
        number=version.number,
        status=VERSION_STATUS_VALUES[version.status],
        system_prompt=version.system_prompt,
        user_prompt_template=version.user_prompt_template,
        llm_options=None if version.llm_options is None else _options_to_proto(version.llm_options),
        options=[store_pb2.VersionOption(key=o.key, label=o.label) for o in version.options],
        created_at=_timestamp(version.created_at),
        published_at=_timestamp(version.published_at),
    )


def result_to_proto(result: tables.SessionResult | ResultView) -> store_pb2.SessionResult:
    return store_pb2.SessionResult(
        llm_result=result.llm_result,
        messages=[
            common_pb2.ChatMessage(role=ROLE_VALUES[m["role"]], content=m["content"]) for m in result.messages
        ],
        model=result.model,
        usage=common_pb2.Usage(**result.usage),
        input_hash=result.input_hash,
        created_at=_timestamp(result.created_at),
        json_result=None if result.json_result is None else json.dumps(result.json_result),
    )


def session_to_proto(session: tables.Session | SessionView) -> store_pb2.Session:
    return store_pb2.Session(
        session_code=session.session_code,
        version=version_to_proto(session.version),
        answers=[
            store_pb2.Answer(option_key=a.option.key, label=a.option.label, value=a.value)
            for a in session.answers
        ],
        latest_result=None if session.result is None else result_to_proto(session.result),
        created_at=_timestamp(session.created_at),
    )


def template_to_proto(template: tables.PromptTemplate) -> store_pb2.Template:
    return store_pb2.Template(
        name=template.name,
        description=template.description,
        created_at=_timestamp(template.created_at),
        versions=[version_to_proto(v) for v in template.versions],
    )


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _object(text: str, what: str) -> dict[str, Any]:
    """A JSON object from a request field; empty text is an empty object."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise InvalidStoreRequest(f"{what} must be a JSON object")
    return data


def job_to_proto(job: tables.Job) -> store_pb2.Job:
    return store_pb2.Job(
        id=job.id,
        kind=JOB_KIND_VALUES.get(job.kind, common_pb2.JOB_KIND_UNSPECIFIED),
        status=JOB_STATUS_VALUES[job.status],
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        idempotency_key=job.idempotency_key or "",
        request_json=_json(job.request),
        result_json=None if job.result is None else _json(job.result),
        error=None if job.error is None else common_pb2.JobError(**job.error),
        created_at=_timestamp(job.created_at),
        started_at=_timestamp(job.started_at),
        completed_at=_timestamp(job.completed_at),
        run_at=_timestamp(job.run_at),
        lease_token=job.lease_token or "",
        webhook_url=job.webhook_url or "",
        webhook_job_id=job.webhook_job_id or "",
        pipeline_run_id=job.pipeline_run_id or "",
        step_index=job.step_index,
        project_id=job.project_id,
        batch_id=job.batch_id or "",
        batch_line=job.batch_line or 0,
    )


def batch_to_proto(view: BatchView) -> store_pb2.Batch:
    batch = view.batch
    return store_pb2.Batch(
        id=batch.id,
        endpoint=batch.endpoint,
        input_file_id=batch.input_file_id,
        completion_window=batch.completion_window,
        status=batch.status,
        metadata=batch.batch_metadata,
        request_counts=store_pb2.BatchCounts(
            total=view.counts.total, completed=view.counts.completed, failed=view.counts.failed
        ),
        output_file_id=batch.output_file_id or "",
        error_file_id=batch.error_file_id or "",
        errors=[store_pb2.BatchError(**error) for error in batch.errors or ()],
        created_at=_timestamp(batch.created_at),
        expires_at=_timestamp(batch.expires_at),
        in_progress_at=_timestamp(batch.in_progress_at),
        finalizing_at=_timestamp(batch.finalizing_at),
        completed_at=_timestamp(batch.completed_at),
        failed_at=_timestamp(batch.failed_at),
        expired_at=_timestamp(batch.expired_at),
        cancelling_at=_timestamp(batch.cancelling_at),
        cancelled_at=_timestamp(batch.cancelled_at),
    )


def _new_batch(request: store_pb2.CreateBatchRequest) -> NewBatch:
    if request.window_s <= 0:
        raise InvalidStoreRequest("a batch needs a positive window_s")
    lines = [
        (
            _object(line.request_json, "a batch line's request_json"),
            _job_error(line.error) if line.HasField("error") else None,
        )
        for line in request.lines
    ]
    return NewBatch(
        endpoint=request.endpoint,
        input_file_id=request.input_file_id,
        completion_window=request.completion_window,
        window_s=request.window_s,
        metadata=dict(request.metadata),
        lines=lines,
        errors=[
            {"code": e.code, "message": e.message, "line": e.line, "param": e.param} for e in request.errors
        ],
        max_attempts=request.max_attempts,
    )


def _job_error(error: common_pb2.JobError) -> dict[str, str]:
    """A job error as the queue keeps it: the status only when known."""
    stored = {"code": error.code or "job_failed", "message": error.message}
    if error.status:
        stored["status"] = error.status
    return stored


def run_to_proto(view: RunView) -> store_pb2.PipelineRun:
    run = view.run
    return store_pb2.PipelineRun(
        id=run.id,
        pipeline=run.pipeline,
        status=PIPELINE_RUN_STATUS_VALUES[run.status],
        input_json=_json(run.input),
        current_step=run.current_step,
        steps=[job_to_proto(job) for job in view.steps],
        created_at=_timestamp(run.created_at),
        updated_at=_timestamp(run.updated_at),
        completed_at=_timestamp(run.completed_at),
        webhook_url=run.webhook_url or "",
        webhook_job_id=run.webhook_job_id or "",
    )


def _new_job(new: store_pb2.NewJob) -> NewJob:
    kind = JOB_KIND_NAMES.get(new.kind)
    if kind is None:
        raise InvalidStoreRequest("a job needs a kind")
    return NewJob(
        kind=kind,
        request=_object(new.request_json, "a job's request_json"),
        max_attempts=new.max_attempts,
        webhook_url=new.webhook_url,
    )


def _content(request: store_pb2.AddVersionRequest | store_pb2.UpdateDraftVersionRequest) -> dict[str, Any]:
    """A version's content as the repository takes it, from a request that adds or edits one."""
    return {
        "system_prompt": request.system_prompt if request.HasField("system_prompt") else None,
        "user_prompt_template": request.user_prompt_template
        if request.HasField("user_prompt_template")
        else None,
        "llm_options": _options_to_json(request.llm_options) if request.HasField("llm_options") else None,
        "options": [(o.key, o.label) for o in request.options],
    }


def _filter(values: Any, names: dict[int, str], what: str) -> list[str]:
    """A list filter's enum values as the database names them; an unknown one is the caller's error."""
    unknown = [value for value in values if value not in names]
    if unknown:
        raise InvalidStoreRequest(f"unknown {what} {unknown[0]} in the filter")
    return [names[value] for value in values]


def _leases(leases: Any) -> list[Lease]:
    return [Lease(lease.job_id, lease.lease_token) for lease in leases]


def key_to_proto(key: tables.ApiKey) -> store_pb2.ApiKey:
    return store_pb2.ApiKey(
        id=key.id,
        name=key.name,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        created_at=_timestamp(key.created_at),
        revoked_at=_timestamp(key.revoked_at),
        project_id=key.project_id,
        scopes=key.scopes,
    )


def project_to_proto(project: tables.Project) -> store_pb2.Project:
    return store_pb2.Project(id=project.id, name=project.name, created_at=_timestamp(project.created_at))


def conversation_to_proto(conversation: tables.Conversation) -> store_pb2.StoredConversation:
    return store_pb2.StoredConversation(
        conversation_id=conversation.conversation_id,
        messages=[
            common_pb2.ChatMessage(
                role=ROLE_VALUES[m.role],
                content=m.content,
                tool_calls=_calls_to_proto(m.tool_calls),
                tool_call_id=m.tool_call_id or "",
            )
            for m in conversation.messages
        ],
        created_at=_timestamp(conversation.created_at),
        updated_at=_timestamp(conversation.updated_at),
    )


def _response_params_to_json(params: store_pb2.ResponseParams) -> dict[str, Any]:
    return {
        name: getattr(params, name)
        for name in ("max_output_tokens", "temperature", "top_p")
        if params.HasField(name)
    }


def _usage_to_json(usage: common_pb2.Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _calls_to_json(calls: Iterable[common_pb2.ToolCall]) -> tuple[Call, ...]:
    return tuple({"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls)


def _calls_to_proto(calls: Iterable[Call] | None) -> list[common_pb2.ToolCall]:
    return [common_pb2.ToolCall(**call) for call in calls or ()]


def _outcome(
    status: common_pb2.ResponseStatus,
    output_text: str,
    finish_reason: common_pb2.FinishReason,
    usage: common_pb2.Usage | None,
    error: common_pb2.JobError | None,
    output_tool_calls: Iterable[common_pb2.ToolCall] = (),
) -> Outcome:
    name = RESPONSE_STATUS_NAMES.get(status)
    if name is None:
        raise InvalidStoreRequest("a stored response needs a status")
    return Outcome(
        status=name,
        output_text=output_text,
        finish_reason=FINISH_REASON_NAMES.get(finish_reason),
        usage=_usage_to_json(usage) if usage is not None else None,
        error={"code": error.code, "message": error.message} if error is not None else None,
        output_tool_calls=_calls_to_json(output_tool_calls),
    )


def response_item_to_proto(item: tables.StoredResponseItem) -> store_pb2.ResponseItem:
    return store_pb2.ResponseItem(
        item_id=item.item_id,
        role=item.role,
        content=item.content,
        tool_calls=_calls_to_proto(item.tool_calls),
        tool_call_id=item.tool_call_id or "",
    )


def stored_response_to_proto(
    response: tables.StoredResponse, with_input: bool = False
) -> store_pb2.StoredResponse:
    usage = response.usage or {}
    return store_pb2.StoredResponse(
        response_id=response.response_id,
        previous_response_id=response.previous_response_id or "",
        status=RESPONSE_STATUS_VALUES[response.status],
        model=response.model,
        instructions=response.instructions,
        metadata=response.labels,
        params=store_pb2.ResponseParams(**response.params),
        input=[response_item_to_proto(item) for item in response.input] if with_input else [],
        output_item_id=response.output_item_id,
        output_text=response.output_text,
        finish_reason=FINISH_REASON_VALUES.get(
            response.finish_reason or "", common_pb2.FINISH_REASON_UNSPECIFIED
        ),
        usage=common_pb2.Usage(**usage),
        error=common_pb2.JobError(**response.error) if response.error else None,
        created_at=_timestamp(response.created_at),
        completed_at=_timestamp(response.completed_at),
        output_tool_calls=_calls_to_proto(response.output_tool_calls),
    )


def file_to_proto(stored: tables.StoredFile) -> store_pb2.StoredFile:
    return store_pb2.StoredFile(
        id=stored.id,
        filename=stored.filename,
        purpose=stored.purpose,
        content_type=stored.content_type,
        bytes=stored.size,
        sha256=stored.sha256,
        created_at=_timestamp(stored.created_at),
        expires_at=_timestamp(stored.expires_at),
    )


def knowledge_base_to_proto(view: KnowledgeBaseView) -> store_pb2.KnowledgeBase:
    base = view.base
    return store_pb2.KnowledgeBase(
        id=base.id,
        name=base.name,
        description=base.description,
        metadata=base.labels,
        embedding_model=base.embedding_model,
        serving_model=base.serving_model,
        generation=base.generation,
        serving_generation=base.serving_generation,
        chunk_size=base.chunk_size,
        chunk_overlap=base.chunk_overlap,
        documents=store_pb2.DocumentCounts(**view.counts, total=sum(view.counts.values())),
        bytes=view.bytes,
        created_at=_timestamp(base.created_at),
        updated_at=_timestamp(base.updated_at),
    )


def file_batch_to_proto(view: FileBatchView) -> store_pb2.FileBatch:
    return store_pb2.FileBatch(
        id=view.batch.id,
        knowledge_base_id=view.knowledge_base_id,
        file_ids=view.batch.file_ids,
        status=view.status,
        created_at=_timestamp(view.batch.created_at),
        pending_job_ids=view.pending_job_ids,
        **view.counts,
    )


def document_to_proto(document: tables.KbDocument) -> store_pb2.KbDocument:
    return store_pb2.KbDocument(
        id=document.id,
        knowledge_base_id=document.knowledge_base_id,
        file_id=document.file_id or "",
        title=document.title,
        content_type=document.content_type,
        content_hash=document.content_hash,
        metadata_json=metadata_json(document.labels or {}),
        status=document.status,
        indexed_generation=document.indexed_generation,
        chunk_count=document.chunk_count,
        chunks_written=document.chunks_written,
        error=common_pb2.JobError(**document.error) if document.error else None,
        job_id=document.job_id or "",
        created_at=_timestamp(document.created_at),
        updated_at=_timestamp(document.updated_at),
    )


def hit_to_proto(hit: Hit) -> common_pb2.KnowledgeHit:
    return common_pb2.KnowledgeHit(
        knowledge_base_id=hit.knowledge_base_id,
        document_id=hit.document_id,
        file_id=hit.file_id,
        title=hit.title,
        chunk_position=hit.position,
        text=hit.text,
        start=hit.start,
        end=hit.end,
        score=hit.score,
        metadata_json=metadata_json(hit.metadata),
    )


_SEARCH_MODES = {
    common_pb2.KNOWLEDGE_SEARCH_MODE_VECTOR: "vector",
    common_pb2.KNOWLEDGE_SEARCH_MODE_TEXT: "text",
    common_pb2.KNOWLEDGE_SEARCH_MODE_HYBRID: "hybrid",
}


def _attribute_filter(text: str) -> dict[str, Any] | None:
    return _object(text, "filter_json") if text else None


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    """DescribeStore; templates (ListTemplates too), versions (UpdateDraftVersion too), sessions and
    results (repository); the job queue and pipeline runs (queue: EnqueueJob … WatchJobs,
    CreatePipelineRun … CancelPipelineRun, ListJobs, ListPipelineRuns); projects and API keys
    (api_keys: CreateApiKey … VerifyApiKey, CreateProject, ListProjects); stored conversations
    (conversations); stored responses (responses: CreateStoredResponse … ListResponseInputItems);
    files, knowledge bases, documents, file batches, chunks and search (knowledge: CreateFile …
    SearchChunks, CreateFileBatch … CancelFileBatch).
    Calls on a project's objects act for the project the call names (services/common/tenancy); keys
    and projects are managed across projects by the admin API."""

    def __init__(
        self,
        repository: Repository,
        queue: JobQueue,
        api_keys: ApiKeys,
        conversations: Conversations,
        responses: StoredResponses,
        knowledge: Knowledge,
    ) -> None:
        self.repository = repository
        self.queue = queue
        self.api_keys = api_keys
        self.conversations = conversations
        self.responses = responses
        self.knowledge = knowledge

    async def DescribeStore(
        self, request: store_pb2.DescribeStoreRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DescribeStoreResponse:
        description = await self.repository.describe()
        return store_pb2.DescribeStoreResponse(
            dialect=description.dialect,
            server_version=description.server_version,
            schema_revision=description.schema_revision,
        )

    async def CreateTemplate(
        self, request: store_pb2.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateTemplateResponse:
        template = await self.repository.create_template(current_project(), request.name, request.description)
        return store_pb2.CreateTemplateResponse(template=template_to_proto(template))

    async def GetTemplate(
        self, request: store_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetTemplateResponse:
        template = await self.repository.get_template(current_project(), request.name)
        return store_pb2.GetTemplateResponse(template=template_to_proto(template))

    async def GetVersion(
        self, request: store_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetVersionResponse:
        version = await self.repository.get_version(current_project(), request.template_name, request.number)
        return store_pb2.GetVersionResponse(version=version_to_proto(version))

    async def AddVersion(
        self, request: store_pb2.AddVersionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.AddVersionResponse:
        version = await self.repository.add_version(
            current_project(), request.template_name, **_content(request)
        )
        return store_pb2.AddVersionResponse(version=version_to_proto(version))

    async def SetVersionStatus(
        self, request: store_pb2.SetVersionStatusRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SetVersionStatusResponse:
        status = VERSION_STATUS_NAMES.get(request.status)
        if status is None:
            raise InvalidStoreRequest("status must be DRAFT, PUBLISHED or ARCHIVED")
        version = await self.repository.set_version_status(
            current_project(), request.template_name, request.number, status
        )
        return store_pb2.SetVersionStatusResponse(version=version_to_proto(version))

    async def CreateSession(
        self, request: store_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateSessionResponse:
        session = await self.repository.create_session(
            current_project(), request.session_code, request.template_name, request.version_number
        )
        return store_pb2.CreateSessionResponse(session=session_to_proto(session))

    async def PutAnswers(
        self, request: store_pb2.PutAnswersRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.PutAnswersResponse:
        answers = [NewAnswer(a.option_key, a.value) for a in request.answers]
        session = await self.repository.put_answers(current_project(), request.session_code, answers)
        return store_pb2.PutAnswersResponse(session=session_to_proto(session))

    async def GetSession(
        self, request: store_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetSessionResponse:
        session = await self.repository.get_session(current_project(), request.session_code)
        return store_pb2.GetSessionResponse(session=session_to_proto(session))

    async def SaveSessionResult(
        self, request: store_pb2.SaveSessionResultRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SaveSessionResultResponse:
        result = request.result
        saved = await self.repository.save_result(
            current_project(),
            request.session_code,
            NewResult(
                llm_result=result.llm_result,
                messages=[{"role": _role_name(m.role), "content": m.content} for m in result.messages],
                model=result.model,
                usage={
                    "prompt_tokens": result.usage.prompt_tokens,
                    "completion_tokens": result.usage.completion_tokens,
                    "total_tokens": result.usage.total_tokens,
                },
                input_hash=result.input_hash,
                json_result=_json_value(result.json_result, "result.json_result")
                if result.HasField("json_result")
                else None,
            ),
        )
        return store_pb2.SaveSessionResultResponse(result=result_to_proto(saved))

    # The job queue

    async def EnqueueJob(
        self, request: store_pb2.EnqueueJobRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.EnqueueJobResponse:
        job, created = await self.queue.enqueue(
            current_project(), _new_job(request.job), request.idempotency_key, request.request_fingerprint
        )
        return store_pb2.EnqueueJobResponse(job=job_to_proto(job), created=created)

    async def GetJob(
        self, request: store_pb2.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetJobResponse:
        job = await self.queue.get(current_project(), request.job_id)
        return store_pb2.GetJobResponse(job=job_to_proto(job))

    async def CancelJob(
        self, request: store_pb2.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CancelJobResponse:
        job = await self.queue.cancel(current_project(), request.job_id)
        return store_pb2.CancelJobResponse(job=job_to_proto(job))

    async def ClaimJobs(
        self, request: store_pb2.ClaimJobsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ClaimJobsResponse:
        claimed = await self.queue.claim(
            request.worker,
            request.limit,
            request.lease_s,
            request.batch_limit if request.HasField("batch_limit") else None,
        )
        return store_pb2.ClaimJobsResponse(
            jobs=[job_to_proto(job) for job in claimed.jobs], next_due_s=claimed.next_due_s
        )

    async def RenewLeases(
        self, request: store_pb2.RenewLeasesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.RenewLeasesResponse:
        held = await self.queue.renew(_leases(request.leases), request.lease_s)
        return store_pb2.RenewLeasesResponse(held_job_ids=held)

    async def CompleteJobs(
        self, request: store_pb2.CompleteJobsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CompleteJobsResponse:
        completions, unreadable = [], []
        for item in request.completions:
            try:
                completions.append(
                    Completion(
                        Lease(item.lease.job_id, item.lease.lease_token),
                        _object(item.result_json, "result_json"),
                        _new_job(item.next_step) if item.HasField("next_step") else None,
                    )
                )
            except InvalidStoreRequest as exc:
                log.warning("job completion refused", extra={"job_id": item.lease.job_id, "reason": str(exc)})
                unreadable.append(item.lease.job_id)
        completed, rejected = await self.queue.complete_many(completions)
        return store_pb2.CompleteJobsResponse(completed=completed, rejected_job_ids=[*unreadable, *rejected])

    async def FailJob(
        self, request: store_pb2.FailJobRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.FailJobResponse:
        job = await self.queue.fail(
            Lease(request.lease.job_id, request.lease.lease_token),
            _job_error(request.error),
            request.retry_after_s if request.HasField("retry_after_s") else None,
        )
        return store_pb2.FailJobResponse(job=job_to_proto(job))

    async def ReleaseJobs(
        self, request: store_pb2.ReleaseJobsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ReleaseJobsResponse:
        return store_pb2.ReleaseJobsResponse(released=await self.queue.release(_leases(request.leases)))

    async def WatchJobs(
        self, request: store_pb2.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[store_pb2.WatchJobsResponse]:
        signals = self.queue.signals
        wake = signals.subscribe()
        try:
            yield store_pb2.WatchJobsResponse()
            while not signals.closed:
                await wake.wait()
                wake.clear()
                if not signals.closed:
                    yield store_pb2.WatchJobsResponse()
        finally:
            signals.unsubscribe(wake)

    # Pipeline runs

    async def CreatePipelineRun(
        self, request: store_pb2.CreatePipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreatePipelineRunResponse:
        view, created = await self.queue.create_run(
            current_project(),
            request.pipeline,
            _object(request.input_json, "input_json"),
            _new_job(request.first_step),
            request.idempotency_key,
            request.request_fingerprint,
            request.webhook_url,
        )
        return store_pb2.CreatePipelineRunResponse(run=run_to_proto(view), created=created)

    async def GetPipelineRun(
        self, request: store_pb2.GetPipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetPipelineRunResponse:
        view = await self.queue.get_run(current_project(), request.run_id)
        return store_pb2.GetPipelineRunResponse(run=run_to_proto(view))

    async def ResumePipelineRun(
        self, request: store_pb2.ResumePipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ResumePipelineRunResponse:
        view = await self.queue.resume_run(current_project(), request.run_id)
        return store_pb2.ResumePipelineRunResponse(run=run_to_proto(view))

    async def CancelPipelineRun(
        self, request: store_pb2.CancelPipelineRunRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CancelPipelineRunResponse:
        view = await self.queue.cancel_run(current_project(), request.run_id)
        return store_pb2.CancelPipelineRunResponse(run=run_to_proto(view))

    async def CreateApiKey(
        self, request: store_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateApiKeyResponse:
        key, secret = await self.api_keys.create_key(
            request.project_id or DEFAULT_PROJECT,
            request.name,
            request.scopes,
            request.rpm_limit,
            request.tpm_limit,
        )
        return store_pb2.CreateApiKeyResponse(key=key_to_proto(key), secret=secret)

    async def ListApiKeys(
        self, request: store_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListApiKeysResponse:
        project = request.project_id if request.HasField("project_id") else None
        keys = await self.api_keys.list_keys(project)
        return store_pb2.ListApiKeysResponse(keys=[key_to_proto(k) for k in keys])

    async def RevokeApiKey(
        self, request: store_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.RevokeApiKeyResponse:
        project = request.project_id if request.HasField("project_id") else None
        key = await self.api_keys.revoke_key(request.key_id, project)
        return store_pb2.RevokeApiKeyResponse(key=key_to_proto(key))

    async def VerifyApiKey(
        self, request: store_pb2.VerifyApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.VerifyApiKeyResponse:
        return store_pb2.VerifyApiKeyResponse(
            key=key_to_proto(await self.api_keys.verify_key(request.secret))
        )

    async def CreateProject(
        self, request: store_pb2.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateProjectResponse:
        project = await self.api_keys.create_project(request.id, request.name)
        return store_pb2.CreateProjectResponse(project=project_to_proto(project))

    async def ListProjects(
        self, request: store_pb2.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListProjectsResponse:
        projects = await self.api_keys.list_projects()
        return store_pb2.ListProjectsResponse(projects=[project_to_proto(p) for p in projects])

    async def GetConversation(
        self, request: store_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetConversationResponse:
        conversation = await self.conversations.get(current_project(), request.conversation_id)
        return store_pb2.GetConversationResponse(conversation=conversation_to_proto(conversation))

    async def AppendConversation(
        self, request: store_pb2.AppendConversationRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.AppendConversationResponse:
        turns = [
            Turn(
                _role_name(m.role),
                m.content,
                _calls_to_json(m.tool_calls),
                m.tool_call_id,
            )
            for m in request.messages
        ]
        length = await self.conversations.append(current_project(), request.conversation_id, turns)
        return store_pb2.AppendConversationResponse(length=length)

    async def DeleteConversation(
        self, request: store_pb2.DeleteConversationRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DeleteConversationResponse:
        await self.conversations.delete(current_project(), request.conversation_id)
        return store_pb2.DeleteConversationResponse()

    async def CreateStoredResponse(
        self, request: store_pb2.CreateStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateStoredResponseResponse:
        outcome = _outcome(
            request.status,
            request.output_text,
            request.finish_reason,
            request.usage if request.HasField("usage") else None,
            None,
            request.output_tool_calls,
        )
        response = await self.responses.create(
            current_project(),
            NewResponse(
                model=request.model,
                input=[
                    NewItem(item.role, item.content, _calls_to_json(item.tool_calls), item.tool_call_id)
                    for item in request.input
                ],
                outcome=outcome,
                previous_response_id=request.previous_response_id or None,
                instructions=request.instructions if request.HasField("instructions") else None,
                metadata=dict(request.metadata),
                params=_response_params_to_json(request.params),
            ),
        )
        return store_pb2.CreateStoredResponseResponse(
            response=stored_response_to_proto(response, with_input=True)
        )

    async def FinishStoredResponse(
        self, request: store_pb2.FinishStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.FinishStoredResponseResponse:
        outcome = _outcome(
            request.status,
            request.output_text,
            request.finish_reason,
            request.usage if request.HasField("usage") else None,
            request.error if request.HasField("error") else None,
            request.output_tool_calls,
        )
        response = await self.responses.finish(current_project(), request.response_id, outcome)
        return store_pb2.FinishStoredResponseResponse(response=stored_response_to_proto(response))

    async def GetStoredResponse(
        self, request: store_pb2.GetStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetStoredResponseResponse:
        response = await self.responses.get(current_project(), request.response_id)
        return store_pb2.GetStoredResponseResponse(response=stored_response_to_proto(response))

    async def GetResponseChain(
        self, request: store_pb2.GetResponseChainRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetResponseChainResponse:
        chain = await self.responses.chain(current_project(), request.response_id)
        return store_pb2.GetResponseChainResponse(
            responses=[stored_response_to_proto(response, with_input=True) for response in chain]
        )

    async def DeleteStoredResponse(
        self, request: store_pb2.DeleteStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DeleteStoredResponseResponse:
        await self.responses.delete(current_project(), request.response_id)
        return store_pb2.DeleteStoredResponseResponse()

    async def ListResponseInputItems(
        self, request: store_pb2.ListResponseInputItemsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListResponseInputItemsResponse:
        items, has_more = await self.responses.input_items(
            current_project(), request.response_id, request.limit, request.ascending, request.after
        )
        return store_pb2.ListResponseInputItemsResponse(
            items=[response_item_to_proto(item) for item in items], has_more=has_more
        )

    async def ListJobs(
        self, request: store_pb2.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListJobsResponse:
        jobs, has_more = await self.queue.list_jobs(
            current_project(),
            request.limit,
            request.after,
            _filter(request.kinds, JOB_KIND_NAMES, "job kind"),
            _filter(request.statuses, JOB_STATUS_NAMES, "job status"),
        )
        return store_pb2.ListJobsResponse(jobs=[job_to_proto(job) for job in jobs], has_more=has_more)

    async def CreateBatch(
        self, request: store_pb2.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateBatchResponse:
        view = await self.queue.create_batch(current_project(), _new_batch(request))
        return store_pb2.CreateBatchResponse(batch=batch_to_proto(view))

    async def GetBatch(
        self, request: store_pb2.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetBatchResponse:
        view = await self.queue.get_batch(current_project(), request.batch_id)
        return store_pb2.GetBatchResponse(batch=batch_to_proto(view))

    async def ListBatches(
        self, request: store_pb2.ListBatchesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListBatchesResponse:
        views, has_more = await self.queue.list_batches(current_project(), request.limit, request.after)
        return store_pb2.ListBatchesResponse(batches=[batch_to_proto(v) for v in views], has_more=has_more)

    async def CancelBatch(
        self, request: store_pb2.CancelBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CancelBatchResponse:
        view = await self.queue.cancel_batch(current_project(), request.batch_id)
        return store_pb2.CancelBatchResponse(batch=batch_to_proto(view))

    async def ListBatchLines(
        self, request: store_pb2.ListBatchLinesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListBatchLinesResponse:
        jobs, has_more = await self.queue.batch_lines(
            current_project(), request.batch_id, request.after_line, request.limit
        )
        return store_pb2.ListBatchLinesResponse(lines=[job_to_proto(job) for job in jobs], has_more=has_more)

    async def ListPipelineRuns(
        self, request: store_pb2.ListPipelineRunsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListPipelineRunsResponse:
        views, has_more = await self.queue.list_runs(
            current_project(),
            request.limit,
            request.after,
            _filter(request.statuses, PIPELINE_RUN_STATUS_NAMES, "pipeline run status"),
        )
        return store_pb2.ListPipelineRunsResponse(
            runs=[run_to_proto(view) for view in views], has_more=has_more
        )

    async def ListTemplates(
        self, request: store_pb2.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListTemplatesResponse:
        templates, has_more = await self.repository.list_templates(
            current_project(), request.limit, request.after
        )
        return store_pb2.ListTemplatesResponse(
            templates=[template_to_proto(t) for t in templates], has_more=has_more
        )

    async def UpdateDraftVersion(
        self, request: store_pb2.UpdateDraftVersionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.UpdateDraftVersionResponse:
        version = await self.repository.update_draft(
            current_project(), request.template_name, request.number, **_content(request)
        )
        return store_pb2.UpdateDraftVersionResponse(version=version_to_proto(version))

    # Files

    async def CreateFile(
        self, request: store_pb2.CreateFileRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateFileResponse:
        stored = await self.knowledge.create_file(
            current_project(), request.filename, request.purpose, request.content_type, request.content
        )
        return store_pb2.CreateFileResponse(file=file_to_proto(stored))

    async def ListFiles(
        self, request: store_pb2.ListFilesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListFilesResponse:
        files, has_more = await self.knowledge.list_files(
            current_project(), request.purpose, request.limit, request.after, request.ascending
        )
        return store_pb2.ListFilesResponse(files=[file_to_proto(f) for f in files], has_more=has_more)

    async def GetFile(
        self, request: store_pb2.GetFileRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetFileResponse:
        return store_pb2.GetFileResponse(
            file=file_to_proto(await self.knowledge.get_file(current_project(), request.file_id))
        )

    async def GetFileContent(
        self, request: store_pb2.GetFileContentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetFileContentResponse:
        stored, content = await self.knowledge.file_content(current_project(), request.file_id)
        return store_pb2.GetFileContentResponse(file=file_to_proto(stored), content=content)

    async def DeleteFile(
        self, request: store_pb2.DeleteFileRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DeleteFileResponse:
        await self.knowledge.delete_file(current_project(), request.file_id)
        return store_pb2.DeleteFileResponse()

    # Knowledge bases

    async def CreateKnowledgeBase(
        self, request: store_pb2.CreateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateKnowledgeBaseResponse:
        view = await self.knowledge.create_knowledge_base(
            current_project(),
            request.name,
            request.description,
            dict(request.metadata),
            request.embedding_model,
            request.chunk_size,
            request.chunk_overlap if request.HasField("chunk_overlap") else None,
        )
        return store_pb2.CreateKnowledgeBaseResponse(knowledge_base=knowledge_base_to_proto(view))

    async def ListKnowledgeBases(
        self, request: store_pb2.ListKnowledgeBasesRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListKnowledgeBasesResponse:
        views, has_more = await self.knowledge.list_knowledge_bases(
            current_project(), request.limit, request.after, request.ascending
        )
        return store_pb2.ListKnowledgeBasesResponse(
            knowledge_bases=[knowledge_base_to_proto(v) for v in views], has_more=has_more
        )

    async def GetKnowledgeBase(
        self, request: store_pb2.GetKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetKnowledgeBaseResponse:
        view = await self.knowledge.get_knowledge_base(current_project(), request.knowledge_base_id)
        return store_pb2.GetKnowledgeBaseResponse(knowledge_base=knowledge_base_to_proto(view))

    async def UpdateKnowledgeBase(
        self, request: store_pb2.UpdateKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.UpdateKnowledgeBaseResponse:
        view, reindex = await self.knowledge.update_knowledge_base(
            current_project(),
            request.knowledge_base_id,
            name=request.name if request.HasField("name") else None,
            description=request.description if request.HasField("description") else None,
            metadata=dict(request.metadata) if request.set_metadata else None,
            embedding_model=request.embedding_model if request.HasField("embedding_model") else None,
        )
        return store_pb2.UpdateKnowledgeBaseResponse(
            knowledge_base=knowledge_base_to_proto(view), reindex_document_ids=reindex
        )

    async def DeleteKnowledgeBase(
        self, request: store_pb2.DeleteKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DeleteKnowledgeBaseResponse:
        await self.knowledge.delete_knowledge_base(
            current_project(), request.knowledge_base_id, request.force
        )
        return store_pb2.DeleteKnowledgeBaseResponse()

    async def AddDocument(
        self, request: store_pb2.AddDocumentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.AddDocumentResponse:
        document, created = await self.knowledge.add_document(
            current_project(),
            request.knowledge_base_id,
            request.title,
            request.content_type,
            request.text,
            _object(request.metadata_json, "metadata_json"),
            request.file_id or None,
        )
        return store_pb2.AddDocumentResponse(document=document_to_proto(document), created=created)

    async def SetDocumentJob(
        self, request: store_pb2.SetDocumentJobRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SetDocumentJobResponse:
        document = await self.knowledge.set_document_job(
            current_project(), request.document_id, request.job_id
        )
        return store_pb2.SetDocumentJobResponse(document=document_to_proto(document))

    async def ListDocuments(
        self, request: store_pb2.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.ListDocumentsResponse:
        documents, has_more = await self.knowledge.list_documents(
            current_project(),
            request.knowledge_base_id,
            request.status,
            request.limit,
            request.after,
            request.ascending,
            request.file_batch_id,
        )
        return store_pb2.ListDocumentsResponse(
            documents=[document_to_proto(d) for d in documents], has_more=has_more
        )

    async def CreateFileBatch(
        self, request: store_pb2.CreateFileBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateFileBatchResponse:
        view = await self.knowledge.create_file_batch(
            current_project(), request.knowledge_base_id, list(request.file_ids)
        )
        return store_pb2.CreateFileBatchResponse(batch=file_batch_to_proto(view))

    async def GetFileBatch(
        self, request: store_pb2.GetFileBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetFileBatchResponse:
        view = await self.knowledge.get_file_batch(
            current_project(), request.knowledge_base_id, request.file_batch_id
        )
        return store_pb2.GetFileBatchResponse(batch=file_batch_to_proto(view))

    async def CancelFileBatch(
        self, request: store_pb2.CancelFileBatchRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CancelFileBatchResponse:
        view = await self.knowledge.cancel_file_batch(
            current_project(), request.knowledge_base_id, request.file_batch_id
        )
        return store_pb2.CancelFileBatchResponse(batch=file_batch_to_proto(view))

    async def GetDocument(
        self, request: store_pb2.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetDocumentResponse:
        document = await self.knowledge.get_document(
            current_project(), request.knowledge_base_id, request.document_id
        )
        return store_pb2.GetDocumentResponse(document=document_to_proto(document))

    async def DeleteDocument(
        self, request: store_pb2.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DeleteDocumentResponse:
        await self.knowledge.delete_document(
            current_project(), request.knowledge_base_id, request.document_id
        )
        return store_pb2.DeleteDocumentResponse()

    async def GetIndexingWork(
        self, request: store_pb2.GetIndexingWorkRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetIndexingWorkResponse:
        work = await self.knowledge.indexing_work(current_project(), request.document_id)
        return store_pb2.GetIndexingWorkResponse(
            document=document_to_proto(work.document),
            text=work.text,
            generation=work.generation,
            embedding_model=work.embedding_model,
            chunk_size=work.chunk_size,
            chunk_overlap=work.chunk_overlap,
            chunks_written=work.chunks_written,
            done=work.done,
        )

    async def PutChunks(
        self, request: store_pb2.PutChunksRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.PutChunksResponse:
        written = await self.knowledge.put_chunks(
            current_project(),
            request.document_id,
            request.generation,
            [NewChunk(c.position, c.text, c.start, c.end, list(c.embedding)) for c in request.chunks],
            request.chunk_total,
        )
        return store_pb2.PutChunksResponse(chunks_written=written)

    async def FinishDocument(
        self, request: store_pb2.FinishDocumentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.FinishDocumentResponse:
        document = await self.knowledge.finish_document(
            current_project(), request.document_id, request.generation, request.chunk_count
        )
        return store_pb2.FinishDocumentResponse(document=document_to_proto(document))

    async def FailDocument(
        self, request: store_pb2.FailDocumentRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.FailDocumentResponse:
        document = await self.knowledge.fail_document(
            current_project(),
            request.document_id,
            {"code": request.error.code or "ingestion_failed", "message": request.error.message},
        )
        return store_pb2.FailDocumentResponse(document=document_to_proto(document))

    async def SearchChunks(
        self, request: store_pb2.SearchChunksRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SearchChunksResponse:
        mode = _SEARCH_MODES.get(request.mode)
        if mode is None:
            raise InvalidStoreRequest("a search needs a mode: vector, text or hybrid")
        hits = await self.knowledge.search(
            current_project(),
            SearchQuery(
                knowledge_base_ids=list(request.knowledge_base_ids),
                embedding_model=request.embedding_model,
                mode=mode,
                vector=list(request.query_vector),
                text=request.query_text,
                top_k=request.top_k,
                filter=_attribute_filter(request.filter_json),
                exact=request.exact,
            ),
        )
        return store_pb2.SearchChunksResponse(hits=[hit_to_proto(h) for h in hits])

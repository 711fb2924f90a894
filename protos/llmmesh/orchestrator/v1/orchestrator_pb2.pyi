import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from llmmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationSpec(_message.Message):
    __slots__ = ("model", "system", "prompt", "params", "messages", "raw", "conversation_id", "response", "tooling", "constraint", "logprobs", "top_logprobs", "knowledge")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TOOLING_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    system: str
    prompt: str
    params: _common_pb2.SamplingParams
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    raw: bool
    conversation_id: str
    response: ResponseOptions
    tooling: _common_pb2.Tooling
    constraint: _common_pb2.OutputConstraint
    logprobs: bool
    top_logprobs: int
    knowledge: KnowledgeOptions
    def __init__(self, model: _Optional[str] = ..., system: _Optional[str] = ..., prompt: _Optional[str] = ..., params: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., raw: _Optional[bool] = ..., conversation_id: _Optional[str] = ..., response: _Optional[_Union[ResponseOptions, _Mapping]] = ..., tooling: _Optional[_Union[_common_pb2.Tooling, _Mapping]] = ..., constraint: _Optional[_Union[_common_pb2.OutputConstraint, _Mapping]] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., knowledge: _Optional[_Union[KnowledgeOptions, _Mapping]] = ...) -> None: ...

class KnowledgeOptions(_message.Message):
    __slots__ = ("knowledge_base_ids", "top_k", "mode", "filter_json")
    KNOWLEDGE_BASE_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_ids: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    mode: _common_pb2.KnowledgeSearchMode
    filter_json: str
    def __init__(self, knowledge_base_ids: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., mode: _Optional[_Union[_common_pb2.KnowledgeSearchMode, str]] = ..., filter_json: _Optional[str] = ...) -> None: ...

class ResponseOptions(_message.Message):
    __slots__ = ("store", "previous_response_id", "metadata", "message_roles")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ROLES_FIELD_NUMBER: _ClassVar[int]
    store: bool
    previous_response_id: str
    metadata: _containers.ScalarMap[str, str]
    message_roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, store: _Optional[bool] = ..., previous_response_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., message_roles: _Optional[_Iterable[str]] = ...) -> None: ...

class ResponseInfo(_message.Message):
    __slots__ = ("response_id", "created_at", "output_item_id", "model")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    created_at: _timestamp_pb2.Timestamp
    output_item_id: str
    model: str
    def __init__(self, response_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_item_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class RunGenerationRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: GenerationSpec
    def __init__(self, spec: _Optional[_Union[GenerationSpec, _Mapping]] = ...) -> None: ...

class RunGenerationResponse(_message.Message):
    __slots__ = ("result", "response")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.GenerationResult
    response: ResponseInfo
    def __init__(self, result: _Optional[_Union[_common_pb2.GenerationResult, _Mapping]] = ..., response: _Optional[_Union[ResponseInfo, _Mapping]] = ...) -> None: ...

class StreamGenerationRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: GenerationSpec
    def __init__(self, spec: _Optional[_Union[GenerationSpec, _Mapping]] = ...) -> None: ...

class StreamGenerationResponse(_message.Message):
    __slots__ = ("delta", "result", "response", "tool_call")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    delta: _common_pb2.TokenDelta
    result: _common_pb2.GenerationResult
    response: ResponseInfo
    tool_call: _common_pb2.ToolCallDelta
    def __init__(self, delta: _Optional[_Union[_common_pb2.TokenDelta, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.GenerationResult, _Mapping]] = ..., response: _Optional[_Union[ResponseInfo, _Mapping]] = ..., tool_call: _Optional[_Union[_common_pb2.ToolCallDelta, _Mapping]] = ...) -> None: ...

class SessionRun(_message.Message):
    __slots__ = ("session_code", "llm_result", "messages", "cached", "model", "usage", "created_at", "json_result")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    LLM_RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JSON_RESULT_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    llm_result: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    cached: bool
    model: str
    usage: _common_pb2.Usage
    created_at: _timestamp_pb2.Timestamp
    json_result: str
    def __init__(self, session_code: _Optional[str] = ..., llm_result: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., cached: _Optional[bool] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., json_result: _Optional[str] = ...) -> None: ...

class RunSessionRequest(_message.Message):
    __slots__ = ("session_code", "force_regenerate", "sampling")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    FORCE_REGENERATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    force_regenerate: bool
    sampling: SamplingOverride
    def __init__(self, session_code: _Optional[str] = ..., force_regenerate: _Optional[bool] = ..., sampling: _Optional[_Union[SamplingOverride, _Mapping]] = ...) -> None: ...

class RunSessionResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: SessionRun
    def __init__(self, run: _Optional[_Union[SessionRun, _Mapping]] = ...) -> None: ...

class StreamSessionRequest(_message.Message):
    __slots__ = ("session_code", "force_regenerate", "sampling")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    FORCE_REGENERATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    force_regenerate: bool
    sampling: SamplingOverride
    def __init__(self, session_code: _Optional[str] = ..., force_regenerate: _Optional[bool] = ..., sampling: _Optional[_Union[SamplingOverride, _Mapping]] = ...) -> None: ...

class StreamSessionResponse(_message.Message):
    __slots__ = ("delta", "run")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    delta: _common_pb2.TokenDelta
    run: SessionRun
    def __init__(self, delta: _Optional[_Union[_common_pb2.TokenDelta, _Mapping]] = ..., run: _Optional[_Union[SessionRun, _Mapping]] = ...) -> None: ...

class CreateEmbeddingsRequest(_message.Message):
    __slots__ = ("model", "inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateEmbeddingsResponse(_message.Message):
    __slots__ = ("embeddings", "usage", "model")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    usage: _common_pb2.Usage
    model: str
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class CountTokensRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: GenerationSpec
    def __init__(self, spec: _Optional[_Union[GenerationSpec, _Mapping]] = ...) -> None: ...

class CountTokensResponse(_message.Message):
    __slots__ = ("prompt_tokens", "model")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    model: str
    def __init__(self, prompt_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class DescribeRoutingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RouteTier(_message.Message):
    __slots__ = ("canned", "model")
    CANNED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    canned: str
    model: str
    def __init__(self, canned: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class RouteInfo(_message.Message):
    __slots__ = ("name", "tiers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tiers: _containers.RepeatedCompositeFieldContainer[RouteTier]
    def __init__(self, name: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[RouteTier, _Mapping]]] = ...) -> None: ...

class DescribeRoutingResponse(_message.Message):
    __slots__ = ("models", "routes", "default_route")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ROUTE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    routes: _containers.RepeatedCompositeFieldContainer[RouteInfo]
    default_route: str
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RouteInfo, _Mapping]]] = ..., default_route: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "status", "attempts", "max_attempts", "result_json", "error", "created_at", "started_at", "completed_at", "webhook", "pipeline_run_id", "step_index", "progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: _common_pb2.JobKind
    status: _common_pb2.JobStatus
    attempts: int
    max_attempts: int
    result_json: str
    error: _common_pb2.JobError
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    webhook: WebhookDelivery
    pipeline_run_id: str
    step_index: int
    progress: JobProgress
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.JobKind, str]] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook: _Optional[_Union[WebhookDelivery, _Mapping]] = ..., pipeline_run_id: _Optional[str] = ..., step_index: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("done", "total", "unit")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    unit: str
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("url", "status", "attempts", "error")
    URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    url: str
    status: _common_pb2.JobStatus
    attempts: int
    error: _common_pb2.JobError
    def __init__(self, url: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobOptions(_message.Message):
    __slots__ = ("idempotency_key", "webhook_url", "max_attempts")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    webhook_url: str
    max_attempts: int
    def __init__(self, idempotency_key: _Optional[str] = ..., webhook_url: _Optional[str] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class SubmitGenerationRequest(_message.Message):
    __slots__ = ("spec", "options")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    spec: GenerationSpec
    options: JobOptions
    def __init__(self, spec: _Optional[_Union[GenerationSpec, _Mapping]] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ...) -> None: ...

class SubmitGenerationResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class SubmitSessionRunRequest(_message.Message):
    __slots__ = ("session_code", "force_regenerate", "options", "sampling")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    FORCE_REGENERATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    force_regenerate: bool
    options: JobOptions
    sampling: SamplingOverride
    def __init__(self, session_code: _Optional[str] = ..., force_regenerate: _Optional[bool] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ..., sampling: _Optional[_Union[SamplingOverride, _Mapping]] = ...) -> None: ...

class SubmitSessionRunResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class PipelineStep(_message.Message):
    __slots__ = ("name", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("name", "steps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedCompositeFieldContainer[PipelineStep]
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PipelineStep, _Mapping]]] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPipelinesResponse(_message.Message):
    __slots__ = ("pipelines",)
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ...) -> None: ...

class PipelineRun(_message.Message):
    __slots__ = ("id", "pipeline", "status", "input_json", "current_step", "step_names", "steps", "stalled", "created_at", "updated_at", "completed_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_NAMES_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    STALLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    pipeline: str
    status: _common_pb2.PipelineRunStatus
    input_json: str
    current_step: int
    step_names: _containers.RepeatedScalarFieldContainer[str]
    steps: _containers.RepeatedCompositeFieldContainer[Job]
    stalled: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., pipeline: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.PipelineRunStatus, str]] = ..., input_json: _Optional[str] = ..., current_step: _Optional[int] = ..., step_names: _Optional[_Iterable[str]] = ..., steps: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., stalled: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartPipelineRunRequest(_message.Message):
    __slots__ = ("pipeline", "input_json", "options")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    input_json: str
    options: JobOptions
    def __init__(self, pipeline: _Optional[str] = ..., input_json: _Optional[str] = ..., options: _Optional[_Union[JobOptions, _Mapping]] = ...) -> None: ...

class StartPipelineRunResponse(_message.Message):
    __slots__ = ("run", "created")
    RUN_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    run: PipelineRun
    created: bool
    def __init__(self, run: _Optional[_Union[PipelineRun, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetPipelineRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetPipelineRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PipelineRun
    def __init__(self, run: _Optional[_Union[PipelineRun, _Mapping]] = ...) -> None: ...

class ResumePipelineRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ResumePipelineRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PipelineRun
    def __init__(self, run: _Optional[_Union[PipelineRun, _Mapping]] = ...) -> None: ...

class CancelPipelineRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class CancelPipelineRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: PipelineRun
    def __init__(self, run: _Optional[_Union[PipelineRun, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("limit", "after", "kinds", "statuses")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    kinds: _containers.RepeatedScalarFieldContainer[_common_pb2.JobKind]
    statuses: _containers.RepeatedScalarFieldContainer[_common_pb2.JobStatus]
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_common_pb2.JobKind, str]]] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.JobStatus, str]]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "has_more")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    has_more: bool
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class ListPipelineRunsRequest(_message.Message):
    __slots__ = ("limit", "after", "statuses")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    statuses: _containers.RepeatedScalarFieldContainer[_common_pb2.PipelineRunStatus]
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_common_pb2.PipelineRunStatus, str]]] = ...) -> None: ...

class ListPipelineRunsResponse(_message.Message):
    __slots__ = ("runs", "has_more")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[PipelineRun]
    has_more: bool
    def __init__(self, runs: _Optional[_Iterable[_Union[PipelineRun, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class SamplingOverride(_message.Message):
    __slots__ = ("temperature", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class CreateKnowledgeBaseRequest(_message.Message):
    __slots__ = ("name", "description", "metadata", "embedding_model", "chunk_size", "chunk_overlap")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., embedding_model: _Optional[str] = ..., chunk_size: _Optional[int] = ..., chunk_overlap: _Optional[int] = ...) -> None: ...

class CreateKnowledgeBaseResponse(_message.Message):
    __slots__ = ("knowledge_base_id",)
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ...) -> None: ...

class UpdateKnowledgeBaseRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "name", "description", "set_metadata", "metadata", "embedding_model")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SET_METADATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    name: str
    description: str
    set_metadata: bool
    metadata: _containers.ScalarMap[str, str]
    embedding_model: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., set_metadata: _Optional[bool] = ..., metadata: _Optional[_Mapping[str, str]] = ..., embedding_model: _Optional[str] = ...) -> None: ...

class UpdateKnowledgeBaseResponse(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AddKnowledgeDocumentRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "file_id", "text", "title", "content_type", "metadata_json")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    file_id: str
    text: str
    title: str
    content_type: str
    metadata_json: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., file_id: _Optional[str] = ..., text: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class AddKnowledgeDocumentResponse(_message.Message):
    __slots__ = ("document_id", "created", "job_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    created: bool
    job_id: str
    def __init__(self, document_id: _Optional[str] = ..., created: _Optional[bool] = ..., job_id: _Optional[str] = ...) -> None: ...

class SearchKnowledgeRequest(_message.Message):
    __slots__ = ("knowledge_base_ids", "query", "mode", "top_k", "filter_json", "exact")
    KNOWLEDGE_BASE_IDS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_ids: _containers.RepeatedScalarFieldContainer[str]
    query: str
    mode: _common_pb2.KnowledgeSearchMode
    top_k: int
    filter_json: str
    exact: bool
    def __init__(self, knowledge_base_ids: _Optional[_Iterable[str]] = ..., query: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.KnowledgeSearchMode, str]] = ..., top_k: _Optional[int] = ..., filter_json: _Optional[str] = ..., exact: _Optional[bool] = ...) -> None: ...

class SearchKnowledgeResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.KnowledgeHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.KnowledgeHit, _Mapping]]] = ...) -> None: ...

class BatchLine(_message.Message):
    __slots__ = ("custom_id", "generation", "embeddings", "error", "door_json")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DOOR_JSON_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    generation: GenerationSpec
    embeddings: CreateEmbeddingsRequest
    error: _common_pb2.JobError
    door_json: str
    def __init__(self, custom_id: _Optional[str] = ..., generation: _Optional[_Union[GenerationSpec, _Mapping]] = ..., embeddings: _Optional[_Union[CreateEmbeddingsRequest, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., door_json: _Optional[str] = ...) -> None: ...

class BatchProblem(_message.Message):
    __slots__ = ("code", "message", "line", "param")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    line: int
    param: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., param: _Optional[str] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("endpoint", "input_file_id", "completion_window", "metadata", "lines", "problems")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_WINDOW_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: _containers.ScalarMap[str, str]
    lines: _containers.RepeatedCompositeFieldContainer[BatchLine]
    problems: _containers.RepeatedCompositeFieldContainer[BatchProblem]
    def __init__(self, endpoint: _Optional[str] = ..., input_file_id: _Optional[str] = ..., completion_window: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., lines: _Optional[_Iterable[_Union[BatchLine, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[BatchProblem, _Mapping]]] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

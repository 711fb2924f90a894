import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from llmmesh.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATUS_UNSPECIFIED: _ClassVar[VersionStatus]
    VERSION_STATUS_DRAFT: _ClassVar[VersionStatus]
    VERSION_STATUS_PUBLISHED: _ClassVar[VersionStatus]
    VERSION_STATUS_ARCHIVED: _ClassVar[VersionStatus]
VERSION_STATUS_UNSPECIFIED: VersionStatus
VERSION_STATUS_DRAFT: VersionStatus
VERSION_STATUS_PUBLISHED: VersionStatus
VERSION_STATUS_ARCHIVED: VersionStatus

class DescribeStoreRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeStoreResponse(_message.Message):
    __slots__ = ("dialect", "server_version", "schema_revision")
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_REVISION_FIELD_NUMBER: _ClassVar[int]
    dialect: str
    server_version: str
    schema_revision: str
    def __init__(self, dialect: _Optional[str] = ..., server_version: _Optional[str] = ..., schema_revision: _Optional[str] = ...) -> None: ...

class LlmOptions(_message.Message):
    __slots__ = ("model", "max_tokens", "temperature", "top_p", "seed", "stop", "knowledge_bases", "json_schema")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASES_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    knowledge_bases: _containers.RepeatedScalarFieldContainer[str]
    json_schema: str
    def __init__(self, model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., knowledge_bases: _Optional[_Iterable[str]] = ..., json_schema: _Optional[str] = ...) -> None: ...

class VersionOption(_message.Message):
    __slots__ = ("key", "label")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    key: str
    label: str
    def __init__(self, key: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class TemplateVersion(_message.Message):
    __slots__ = ("id", "template_name", "number", "status", "system_prompt", "user_prompt_template", "llm_options", "options", "created_at", "published_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    LLM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    template_name: str
    number: int
    status: VersionStatus
    system_prompt: str
    user_prompt_template: str
    llm_options: LlmOptions
    options: _containers.RepeatedCompositeFieldContainer[VersionOption]
    created_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., template_name: _Optional[str] = ..., number: _Optional[int] = ..., status: _Optional[_Union[VersionStatus, str]] = ..., system_prompt: _Optional[str] = ..., user_prompt_template: _Optional[str] = ..., llm_options: _Optional[_Union[LlmOptions, _Mapping]] = ..., options: _Optional[_Iterable[_Union[VersionOption, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "description", "created_at", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    created_at: _timestamp_pb2.Timestamp
    versions: _containers.RepeatedCompositeFieldContainer[TemplateVersion]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., versions: _Optional[_Iterable[_Union[TemplateVersion, _Mapping]]] = ...) -> None: ...

class CreateTemplateRequest(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("template_name", "number")
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    template_name: str
    number: int
    def __init__(self, template_name: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class AddVersionRequest(_message.Message):
    __slots__ = ("template_name", "system_prompt", "user_prompt_template", "llm_options", "options")
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    LLM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    template_name: str
    system_prompt: str
    user_prompt_template: str
    llm_options: LlmOptions
    options: _containers.RepeatedCompositeFieldContainer[VersionOption]
    def __init__(self, template_name: _Optional[str] = ..., system_prompt: _Optional[str] = ..., user_prompt_template: _Optional[str] = ..., llm_options: _Optional[_Union[LlmOptions, _Mapping]] = ..., options: _Optional[_Iterable[_Union[VersionOption, _Mapping]]] = ...) -> None: ...

class AddVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class SetVersionStatusRequest(_message.Message):
    __slots__ = ("template_name", "number", "status")
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    template_name: str
    number: int
    status: VersionStatus
    def __init__(self, template_name: _Optional[str] = ..., number: _Optional[int] = ..., status: _Optional[_Union[VersionStatus, str]] = ...) -> None: ...

class SetVersionStatusResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("option_key", "value", "label")
    OPTION_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    option_key: str
    value: str
    label: str
    def __init__(self, option_key: _Optional[str] = ..., value: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class SessionResult(_message.Message):
    __slots__ = ("llm_result", "messages", "model", "usage", "input_hash", "created_at", "json_result")
    LLM_RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INPUT_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    JSON_RESULT_FIELD_NUMBER: _ClassVar[int]
    llm_result: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    model: str
    usage: _common_pb2.Usage
    input_hash: str
    created_at: _timestamp_pb2.Timestamp
    json_result: str
    def __init__(self, llm_result: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., input_hash: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., json_result: _Optional[str] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("session_code", "version", "answers", "latest_result", "created_at")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    LATEST_RESULT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    version: TemplateVersion
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    latest_result: SessionResult
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, session_code: _Optional[str] = ..., version: _Optional[_Union[TemplateVersion, _Mapping]] = ..., answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ..., latest_result: _Optional[_Union[SessionResult, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_code", "template_name", "version_number")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    template_name: str
    version_number: int
    def __init__(self, session_code: _Optional[str] = ..., template_name: _Optional[str] = ..., version_number: _Optional[int] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class PutAnswersRequest(_message.Message):
    __slots__ = ("session_code", "answers")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    def __init__(self, session_code: _Optional[str] = ..., answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ...) -> None: ...

class PutAnswersResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_code",)
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    def __init__(self, session_code: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class SaveSessionResultRequest(_message.Message):
    __slots__ = ("session_code", "result")
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    session_code: str
    result: SessionResult
    def __init__(self, session_code: _Optional[str] = ..., result: _Optional[_Union[SessionResult, _Mapping]] = ...) -> None: ...

class SaveSessionResultResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: SessionResult
    def __init__(self, result: _Optional[_Union[SessionResult, _Mapping]] = ...) -> None: ...

class NewJob(_message.Message):
    __slots__ = ("kind", "request_json", "max_attempts", "webhook_url")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    kind: _common_pb2.JobKind
    request_json: str
    max_attempts: int
    webhook_url: str
    def __init__(self, kind: _Optional[_Union[_common_pb2.JobKind, str]] = ..., request_json: _Optional[str] = ..., max_attempts: _Optional[int] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "status", "attempts", "max_attempts", "idempotency_key", "request_json", "result_json", "error", "created_at", "started_at", "completed_at", "run_at", "lease_token", "webhook_url", "webhook_job_id", "pipeline_run_id", "step_index", "project_id", "batch_id", "batch_line")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_LINE_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: _common_pb2.JobKind
    status: _common_pb2.JobStatus
    attempts: int
    max_attempts: int
    idempotency_key: str
    request_json: str
    result_json: str
    error: _common_pb2.JobError
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    run_at: _timestamp_pb2.Timestamp
    lease_token: str
    webhook_url: str
    webhook_job_id: str
    pipeline_run_id: str
    step_index: int
    project_id: str
    batch_id: str
    batch_line: int
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[_common_pb2.JobKind, str]] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., attempts: _Optional[int] = ..., max_attempts: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., request_json: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_token: _Optional[str] = ..., webhook_url: _Optional[str] = ..., webhook_job_id: _Optional[str] = ..., pipeline_run_id: _Optional[str] = ..., step_index: _Optional[int] = ..., project_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., batch_line: _Optional[int] = ...) -> None: ...

class EnqueueJobRequest(_message.Message):
    __slots__ = ("job", "idempotency_key", "request_fingerprint")
    JOB_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    job: NewJob
    idempotency_key: str
    request_fingerprint: str
    def __init__(self, job: _Optional[_Union[NewJob, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., request_fingerprint: _Optional[str] = ...) -> None: ...

class EnqueueJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

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

class ClaimJobsRequest(_message.Message):
    __slots__ = ("worker", "limit", "lease_s", "batch_limit")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    BATCH_LIMIT_FIELD_NUMBER: _ClassVar[int]
    worker: str
    limit: int
    lease_s: float
    batch_limit: int
    def __init__(self, worker: _Optional[str] = ..., limit: _Optional[int] = ..., lease_s: _Optional[float] = ..., batch_limit: _Optional[int] = ...) -> None: ...

class ClaimJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_due_s")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_S_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_due_s: float
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_due_s: _Optional[float] = ...) -> None: ...

class JobLease(_message.Message):
    __slots__ = ("job_id", "lease_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    lease_token: str
    def __init__(self, job_id: _Optional[str] = ..., lease_token: _Optional[str] = ...) -> None: ...

class RenewLeasesRequest(_message.Message):
    __slots__ = ("leases", "lease_s")
    LEASES_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[JobLease]
    lease_s: float
    def __init__(self, leases: _Optional[_Iterable[_Union[JobLease, _Mapping]]] = ..., lease_s: _Optional[float] = ...) -> None: ...

class RenewLeasesResponse(_message.Message):
    __slots__ = ("held_job_ids",)
    HELD_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    held_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, held_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class JobCompletion(_message.Message):
    __slots__ = ("lease", "result_json", "next_step")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    NEXT_STEP_FIELD_NUMBER: _ClassVar[int]
    lease: JobLease
    result_json: str
    next_step: NewJob
    def __init__(self, lease: _Optional[_Union[JobLease, _Mapping]] = ..., result_json: _Optional[str] = ..., next_step: _Optional[_Union[NewJob, _Mapping]] = ...) -> None: ...

class CompleteJobsRequest(_message.Message):
    __slots__ = ("completions",)
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[JobCompletion]
    def __init__(self, completions: _Optional[_Iterable[_Union[JobCompletion, _Mapping]]] = ...) -> None: ...

class CompleteJobsResponse(_message.Message):
    __slots__ = ("completed", "rejected_job_ids")
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    completed: int
    rejected_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, completed: _Optional[int] = ..., rejected_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class FailJobRequest(_message.Message):
    __slots__ = ("lease", "error", "retry_after_s")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    lease: JobLease
    error: _common_pb2.JobError
    retry_after_s: float
    def __init__(self, lease: _Optional[_Union[JobLease, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., retry_after_s: _Optional[float] = ...) -> None: ...

class FailJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ReleaseJobsRequest(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[JobLease]
    def __init__(self, leases: _Optional[_Iterable[_Union[JobLease, _Mapping]]] = ...) -> None: ...

class ReleaseJobsResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PipelineRun(_message.Message):
    __slots__ = ("id", "pipeline", "status", "input_json", "current_step", "steps", "created_at", "updated_at", "completed_at", "webhook_url", "webhook_job_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    pipeline: str
    status: _common_pb2.PipelineRunStatus
    input_json: str
    current_step: int
    steps: _containers.RepeatedCompositeFieldContainer[Job]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    webhook_url: str
    webhook_job_id: str
    def __init__(self, id: _Optional[str] = ..., pipeline: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.PipelineRunStatus, str]] = ..., input_json: _Optional[str] = ..., current_step: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook_url: _Optional[str] = ..., webhook_job_id: _Optional[str] = ...) -> None: ...

class CreatePipelineRunRequest(_message.Message):
    __slots__ = ("pipeline", "input_json", "first_step", "idempotency_key", "request_fingerprint", "webhook_url")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    FIRST_STEP_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    input_json: str
    first_step: NewJob
    idempotency_key: str
    request_fingerprint: str
    webhook_url: str
    def __init__(self, pipeline: _Optional[str] = ..., input_json: _Optional[str] = ..., first_step: _Optional[_Union[NewJob, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., request_fingerprint: _Optional[str] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class CreatePipelineRunResponse(_message.Message):
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

class ApiKey(_message.Message):
    __slots__ = ("id", "name", "rpm_limit", "tpm_limit", "created_at", "revoked_at", "project_id", "scopes")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    rpm_limit: int
    tpm_limit: int
    created_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    project_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., project_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("name", "rpm_limit", "tpm_limit", "project_id", "scopes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TPM_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    name: str
    rpm_limit: int
    tpm_limit: int
    project_id: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., rpm_limit: _Optional[int] = ..., tpm_limit: _Optional[int] = ..., project_id: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("key", "secret")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    secret: str
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("key_id", "project_id")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    project_id: str
    def __init__(self, key_id: _Optional[str] = ..., project_id: _Optional[str] = ...) -> None: ...

class RevokeApiKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class VerifyApiKeyRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: str
    def __init__(self, secret: _Optional[str] = ...) -> None: ...

class VerifyApiKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("id", "name", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CreateProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    def __init__(self, projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ...) -> None: ...

class StoredConversation(_message.Message):
    __slots__ = ("conversation_id", "messages", "created_at", "updated_at")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, conversation_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: StoredConversation
    def __init__(self, conversation: _Optional[_Union[StoredConversation, _Mapping]] = ...) -> None: ...

class AppendConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "messages")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    def __init__(self, conversation_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class AppendConversationResponse(_message.Message):
    __slots__ = ("length",)
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    length: int
    def __init__(self, length: _Optional[int] = ...) -> None: ...

class DeleteConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class DeleteConversationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResponseItem(_message.Message):
    __slots__ = ("item_id", "role", "content", "tool_calls", "tool_call_id")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    role: str
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    tool_call_id: str
    def __init__(self, item_id: _Optional[str] = ..., role: _Optional[str] = ..., content: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ...) -> None: ...

class ResponseParams(_message.Message):
    __slots__ = ("max_output_tokens", "temperature", "top_p")
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    max_output_tokens: int
    temperature: float
    top_p: float
    def __init__(self, max_output_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ...) -> None: ...

class StoredResponse(_message.Message):
    __slots__ = ("response_id", "previous_response_id", "status", "model", "instructions", "metadata", "params", "input", "output_item_id", "output_text", "finish_reason", "usage", "error", "created_at", "completed_at", "output_tool_calls")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    previous_response_id: str
    status: _common_pb2.ResponseStatus
    model: str
    instructions: str
    metadata: _containers.ScalarMap[str, str]
    params: ResponseParams
    input: _containers.RepeatedCompositeFieldContainer[ResponseItem]
    output_item_id: str
    output_text: str
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    error: _common_pb2.JobError
    created_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    output_tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    def __init__(self, response_id: _Optional[str] = ..., previous_response_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.ResponseStatus, str]] = ..., model: _Optional[str] = ..., instructions: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., params: _Optional[_Union[ResponseParams, _Mapping]] = ..., input: _Optional[_Iterable[_Union[ResponseItem, _Mapping]]] = ..., output_item_id: _Optional[str] = ..., output_text: _Optional[str] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., output_tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class NewResponseItem(_message.Message):
    __slots__ = ("role", "content", "tool_calls", "tool_call_id")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    tool_call_id: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ...) -> None: ...

class CreateStoredResponseRequest(_message.Message):
    __slots__ = ("previous_response_id", "status", "model", "instructions", "metadata", "params", "input", "output_text", "finish_reason", "usage", "output_tool_calls")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PREVIOUS_RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    previous_response_id: str
    status: _common_pb2.ResponseStatus
    model: str
    instructions: str
    metadata: _containers.ScalarMap[str, str]
    params: ResponseParams
    input: _containers.RepeatedCompositeFieldContainer[NewResponseItem]
    output_text: str
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    output_tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    def __init__(self, previous_response_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.ResponseStatus, str]] = ..., model: _Optional[str] = ..., instructions: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., params: _Optional[_Union[ResponseParams, _Mapping]] = ..., input: _Optional[_Iterable[_Union[NewResponseItem, _Mapping]]] = ..., output_text: _Optional[str] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., output_tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class CreateStoredResponseResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: StoredResponse
    def __init__(self, response: _Optional[_Union[StoredResponse, _Mapping]] = ...) -> None: ...

class FinishStoredResponseRequest(_message.Message):
    __slots__ = ("response_id", "status", "output_text", "finish_reason", "usage", "error", "output_tool_calls")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TEXT_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    status: _common_pb2.ResponseStatus
    output_text: str
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    error: _common_pb2.JobError
    output_tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    def __init__(self, response_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.ResponseStatus, str]] = ..., output_text: _Optional[str] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., output_tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class FinishStoredResponseResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: StoredResponse
    def __init__(self, response: _Optional[_Union[StoredResponse, _Mapping]] = ...) -> None: ...

class GetStoredResponseRequest(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class GetStoredResponseResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: StoredResponse
    def __init__(self, response: _Optional[_Union[StoredResponse, _Mapping]] = ...) -> None: ...

class GetResponseChainRequest(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class GetResponseChainResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[StoredResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[StoredResponse, _Mapping]]] = ...) -> None: ...

class DeleteStoredResponseRequest(_message.Message):
    __slots__ = ("response_id",)
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    def __init__(self, response_id: _Optional[str] = ...) -> None: ...

class DeleteStoredResponseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListResponseInputItemsRequest(_message.Message):
    __slots__ = ("response_id", "limit", "ascending", "after")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    limit: int
    ascending: bool
    after: str
    def __init__(self, response_id: _Optional[str] = ..., limit: _Optional[int] = ..., ascending: _Optional[bool] = ..., after: _Optional[str] = ...) -> None: ...

class ListResponseInputItemsResponse(_message.Message):
    __slots__ = ("items", "has_more")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ResponseItem]
    has_more: bool
    def __init__(self, items: _Optional[_Iterable[_Union[ResponseItem, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

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

class ListTemplatesRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates", "has_more")
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    has_more: bool
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class UpdateDraftVersionRequest(_message.Message):
    __slots__ = ("template_name", "number", "system_prompt", "user_prompt_template", "llm_options", "options")
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    LLM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    template_name: str
    number: int
    system_prompt: str
    user_prompt_template: str
    llm_options: LlmOptions
    options: _containers.RepeatedCompositeFieldContainer[VersionOption]
    def __init__(self, template_name: _Optional[str] = ..., number: _Optional[int] = ..., system_prompt: _Optional[str] = ..., user_prompt_template: _Optional[str] = ..., llm_options: _Optional[_Union[LlmOptions, _Mapping]] = ..., options: _Optional[_Iterable[_Union[VersionOption, _Mapping]]] = ...) -> None: ...

class UpdateDraftVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class StoredFile(_message.Message):
    __slots__ = ("id", "filename", "purpose", "content_type", "bytes", "sha256", "created_at", "expires_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    filename: str
    purpose: str
    content_type: str
    bytes: int
    sha256: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., filename: _Optional[str] = ..., purpose: _Optional[str] = ..., content_type: _Optional[str] = ..., bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateFileRequest(_message.Message):
    __slots__ = ("filename", "purpose", "content_type", "content")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    filename: str
    purpose: str
    content_type: str
    content: bytes
    def __init__(self, filename: _Optional[str] = ..., purpose: _Optional[str] = ..., content_type: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class CreateFileResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: StoredFile
    def __init__(self, file: _Optional[_Union[StoredFile, _Mapping]] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("purpose", "limit", "after", "ascending")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    purpose: str
    limit: int
    after: str
    ascending: bool
    def __init__(self, purpose: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("files", "has_more")
    FILES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[StoredFile]
    has_more: bool
    def __init__(self, files: _Optional[_Iterable[_Union[StoredFile, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetFileRequest(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class GetFileResponse(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: StoredFile
    def __init__(self, file: _Optional[_Union[StoredFile, _Mapping]] = ...) -> None: ...

class GetFileContentRequest(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class GetFileContentResponse(_message.Message):
    __slots__ = ("file", "content")
    FILE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    file: StoredFile
    content: bytes
    def __init__(self, file: _Optional[_Union[StoredFile, _Mapping]] = ..., content: _Optional[bytes] = ...) -> None: ...

class DeleteFileRequest(_message.Message):
    __slots__ = ("file_id",)
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    def __init__(self, file_id: _Optional[str] = ...) -> None: ...

class DeleteFileResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DocumentCounts(_message.Message):
    __slots__ = ("queued", "in_progress", "completed", "failed", "total", "cancelled")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    queued: int
    in_progress: int
    completed: int
    failed: int
    total: int
    cancelled: int
    def __init__(self, queued: _Optional[int] = ..., in_progress: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., total: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class KnowledgeBase(_message.Message):
    __slots__ = ("id", "name", "description", "metadata", "embedding_model", "serving_model", "generation", "serving_generation", "chunk_size", "chunk_overlap", "documents", "bytes", "created_at", "updated_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVING_MODEL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SERVING_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    metadata: _containers.ScalarMap[str, str]
    embedding_model: str
    serving_model: str
    generation: int
    serving_generation: int
    chunk_size: int
    chunk_overlap: int
    documents: DocumentCounts
    bytes: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., embedding_model: _Optional[str] = ..., serving_model: _Optional[str] = ..., generation: _Optional[int] = ..., serving_generation: _Optional[int] = ..., chunk_size: _Optional[int] = ..., chunk_overlap: _Optional[int] = ..., documents: _Optional[_Union[DocumentCounts, _Mapping]] = ..., bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("knowledge_base",)
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: KnowledgeBase
    def __init__(self, knowledge_base: _Optional[_Union[KnowledgeBase, _Mapping]] = ...) -> None: ...

class ListKnowledgeBasesRequest(_message.Message):
    __slots__ = ("limit", "after", "ascending")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    ascending: bool
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ...) -> None: ...

class ListKnowledgeBasesResponse(_message.Message):
    __slots__ = ("knowledge_bases", "has_more")
    KNOWLEDGE_BASES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    knowledge_bases: _containers.RepeatedCompositeFieldContainer[KnowledgeBase]
    has_more: bool
    def __init__(self, knowledge_bases: _Optional[_Iterable[_Union[KnowledgeBase, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetKnowledgeBaseRequest(_message.Message):
    __slots__ = ("knowledge_base_id",)
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ...) -> None: ...

class GetKnowledgeBaseResponse(_message.Message):
    __slots__ = ("knowledge_base",)
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: KnowledgeBase
    def __init__(self, knowledge_base: _Optional[_Union[KnowledgeBase, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("knowledge_base", "reindex_document_ids")
    KNOWLEDGE_BASE_FIELD_NUMBER: _ClassVar[int]
    REINDEX_DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    knowledge_base: KnowledgeBase
    reindex_document_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, knowledge_base: _Optional[_Union[KnowledgeBase, _Mapping]] = ..., reindex_document_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteKnowledgeBaseRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "force")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    force: bool
    def __init__(self, knowledge_base_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteKnowledgeBaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KbDocument(_message.Message):
    __slots__ = ("id", "knowledge_base_id", "file_id", "title", "content_type", "content_hash", "metadata_json", "status", "indexed_generation", "chunk_count", "chunks_written", "error", "job_id", "bytes", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INDEXED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    knowledge_base_id: str
    file_id: str
    title: str
    content_type: str
    content_hash: str
    metadata_json: str
    status: str
    indexed_generation: int
    chunk_count: int
    chunks_written: int
    error: _common_pb2.JobError
    job_id: str
    bytes: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., knowledge_base_id: _Optional[str] = ..., file_id: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., content_hash: _Optional[str] = ..., metadata_json: _Optional[str] = ..., status: _Optional[str] = ..., indexed_generation: _Optional[int] = ..., chunk_count: _Optional[int] = ..., chunks_written: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ..., job_id: _Optional[str] = ..., bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddDocumentRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "title", "content_type", "text", "metadata_json", "file_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    title: str
    content_type: str
    text: str
    metadata_json: str
    file_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., text: _Optional[str] = ..., metadata_json: _Optional[str] = ..., file_id: _Optional[str] = ...) -> None: ...

class AddDocumentResponse(_message.Message):
    __slots__ = ("document", "created")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    created: bool
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class SetDocumentJobRequest(_message.Message):
    __slots__ = ("document_id", "job_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    job_id: str
    def __init__(self, document_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class SetDocumentJobResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "status", "limit", "after", "ascending", "file_batch_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    FILE_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    status: str
    limit: int
    after: str
    ascending: bool
    file_batch_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., status: _Optional[str] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ..., ascending: _Optional[bool] = ..., file_batch_id: _Optional[str] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents", "has_more")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[KbDocument]
    has_more: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[KbDocument, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "document_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    document_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., document_id: _Optional[str] = ...) -> None: ...

class GetDocumentResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ...) -> None: ...

class DeleteDocumentRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "document_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    document_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., document_id: _Optional[str] = ...) -> None: ...

class DeleteDocumentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetIndexingWorkRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class GetIndexingWorkResponse(_message.Message):
    __slots__ = ("document", "text", "generation", "embedding_model", "chunk_size", "chunk_overlap", "chunks_written", "done")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    text: str
    generation: int
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    chunks_written: int
    done: bool
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ..., text: _Optional[str] = ..., generation: _Optional[int] = ..., embedding_model: _Optional[str] = ..., chunk_size: _Optional[int] = ..., chunk_overlap: _Optional[int] = ..., chunks_written: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class NewChunk(_message.Message):
    __slots__ = ("position", "text", "start", "end", "embedding")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    position: int
    text: str
    start: int
    end: int
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, position: _Optional[int] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class PutChunksRequest(_message.Message):
    __slots__ = ("document_id", "generation", "chunks", "chunk_total")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_TOTAL_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    generation: int
    chunks: _containers.RepeatedCompositeFieldContainer[NewChunk]
    chunk_total: int
    def __init__(self, document_id: _Optional[str] = ..., generation: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[NewChunk, _Mapping]]] = ..., chunk_total: _Optional[int] = ...) -> None: ...

class PutChunksResponse(_message.Message):
    __slots__ = ("chunks_written",)
    CHUNKS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    chunks_written: int
    def __init__(self, chunks_written: _Optional[int] = ...) -> None: ...

class FinishDocumentRequest(_message.Message):
    __slots__ = ("document_id", "generation", "chunk_count")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    generation: int
    chunk_count: int
    def __init__(self, document_id: _Optional[str] = ..., generation: _Optional[int] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class FinishDocumentResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ...) -> None: ...

class FailDocumentRequest(_message.Message):
    __slots__ = ("document_id", "error")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    error: _common_pb2.JobError
    def __init__(self, document_id: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ...) -> None: ...

class FailDocumentResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: KbDocument
    def __init__(self, document: _Optional[_Union[KbDocument, _Mapping]] = ...) -> None: ...

class SearchChunksRequest(_message.Message):
    __slots__ = ("knowledge_base_ids", "embedding_model", "query_vector", "query_text", "mode", "top_k", "filter_json", "exact")
    KNOWLEDGE_BASE_IDS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    QUERY_TEXT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FILTER_JSON_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_ids: _containers.RepeatedScalarFieldContainer[str]
    embedding_model: str
    query_vector: _containers.RepeatedScalarFieldContainer[float]
    query_text: str
    mode: _common_pb2.KnowledgeSearchMode
    top_k: int
    filter_json: str
    exact: bool
    def __init__(self, knowledge_base_ids: _Optional[_Iterable[str]] = ..., embedding_model: _Optional[str] = ..., query_vector: _Optional[_Iterable[float]] = ..., query_text: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.KnowledgeSearchMode, str]] = ..., top_k: _Optional[int] = ..., filter_json: _Optional[str] = ..., exact: _Optional[bool] = ...) -> None: ...

class SearchChunksResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.KnowledgeHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.KnowledgeHit, _Mapping]]] = ...) -> None: ...

class FileBatch(_message.Message):
    __slots__ = ("id", "knowledge_base_id", "file_ids", "status", "in_progress", "completed", "failed", "cancelled", "created_at", "pending_job_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PENDING_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    knowledge_base_id: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    status: str
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    created_at: _timestamp_pb2.Timestamp
    pending_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., knowledge_base_id: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., in_progress: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateFileBatchRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "file_ids")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_IDS_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    file_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, knowledge_base_id: _Optional[str] = ..., file_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateFileBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: FileBatch
    def __init__(self, batch: _Optional[_Union[FileBatch, _Mapping]] = ...) -> None: ...

class GetFileBatchRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "file_batch_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    file_batch_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., file_batch_id: _Optional[str] = ...) -> None: ...

class GetFileBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: FileBatch
    def __init__(self, batch: _Optional[_Union[FileBatch, _Mapping]] = ...) -> None: ...

class CancelFileBatchRequest(_message.Message):
    __slots__ = ("knowledge_base_id", "file_batch_id")
    KNOWLEDGE_BASE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    knowledge_base_id: str
    file_batch_id: str
    def __init__(self, knowledge_base_id: _Optional[str] = ..., file_batch_id: _Optional[str] = ...) -> None: ...

class CancelFileBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: FileBatch
    def __init__(self, batch: _Optional[_Union[FileBatch, _Mapping]] = ...) -> None: ...

class BatchCounts(_message.Message):
    __slots__ = ("total", "completed", "failed")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    total: int
    completed: int
    failed: int
    def __init__(self, total: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...

class BatchError(_message.Message):
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

class Batch(_message.Message):
    __slots__ = ("id", "endpoint", "input_file_id", "completion_window", "status", "metadata", "request_counts", "output_file_id", "error_file_id", "errors", "created_at", "expires_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_WINDOW_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    IN_PROGRESS_AT_FIELD_NUMBER: _ClassVar[int]
    FINALIZING_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLING_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    metadata: _containers.ScalarMap[str, str]
    request_counts: BatchCounts
    output_file_id: str
    error_file_id: str
    errors: _containers.RepeatedCompositeFieldContainer[BatchError]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    in_progress_at: _timestamp_pb2.Timestamp
    finalizing_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    failed_at: _timestamp_pb2.Timestamp
    expired_at: _timestamp_pb2.Timestamp
    cancelling_at: _timestamp_pb2.Timestamp
    cancelled_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., endpoint: _Optional[str] = ..., input_file_id: _Optional[str] = ..., completion_window: _Optional[str] = ..., status: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., request_counts: _Optional[_Union[BatchCounts, _Mapping]] = ..., output_file_id: _Optional[str] = ..., error_file_id: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[BatchError, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., in_progress_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finalizing_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelling_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class NewBatchLine(_message.Message):
    __slots__ = ("request_json", "error")
    REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_json: str
    error: _common_pb2.JobError
    def __init__(self, request_json: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.JobError, _Mapping]] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("endpoint", "input_file_id", "completion_window", "metadata", "lines", "errors", "window_s", "max_attempts")
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
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: _containers.ScalarMap[str, str]
    lines: _containers.RepeatedCompositeFieldContainer[NewBatchLine]
    errors: _containers.RepeatedCompositeFieldContainer[BatchError]
    window_s: float
    max_attempts: int
    def __init__(self, endpoint: _Optional[str] = ..., input_file_id: _Optional[str] = ..., completion_window: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., lines: _Optional[_Iterable[_Union[NewBatchLine, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[BatchError, _Mapping]]] = ..., window_s: _Optional[float] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("limit", "after")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    limit: int
    after: str
    def __init__(self, limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("batches", "has_more")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    has_more: bool
    def __init__(self, batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("batch_id",)
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    def __init__(self, batch_id: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ListBatchLinesRequest(_message.Message):
    __slots__ = ("batch_id", "after_line", "limit")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_LINE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    after_line: int
    limit: int
    def __init__(self, batch_id: _Optional[str] = ..., after_line: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListBatchLinesResponse(_message.Message):
    __slots__ = ("lines", "has_more")
    LINES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[Job]
    has_more: bool
    def __init__(self, lines: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

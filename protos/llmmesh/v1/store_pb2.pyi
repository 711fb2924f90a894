import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from llmmesh.v1 import common_pb2 as _common_pb2
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
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("model", "max_tokens", "temperature", "top_p", "seed", "stop")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

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
    __slots__ = ("request_id", "name", "description")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    description: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("request_id", "name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetTemplateResponse(_message.Message):
    __slots__ = ("template",)
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    template: Template
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("request_id", "template_name", "number")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    template_name: str
    number: int
    def __init__(self, request_id: _Optional[str] = ..., template_name: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class AddVersionRequest(_message.Message):
    __slots__ = ("request_id", "template_name", "system_prompt", "user_prompt_template", "llm_options", "options")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    LLM_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    template_name: str
    system_prompt: str
    user_prompt_template: str
    llm_options: LlmOptions
    options: _containers.RepeatedCompositeFieldContainer[VersionOption]
    def __init__(self, request_id: _Optional[str] = ..., template_name: _Optional[str] = ..., system_prompt: _Optional[str] = ..., user_prompt_template: _Optional[str] = ..., llm_options: _Optional[_Union[LlmOptions, _Mapping]] = ..., options: _Optional[_Iterable[_Union[VersionOption, _Mapping]]] = ...) -> None: ...

class AddVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: TemplateVersion
    def __init__(self, version: _Optional[_Union[TemplateVersion, _Mapping]] = ...) -> None: ...

class SetVersionStatusRequest(_message.Message):
    __slots__ = ("request_id", "template_name", "number", "status")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    template_name: str
    number: int
    status: VersionStatus
    def __init__(self, request_id: _Optional[str] = ..., template_name: _Optional[str] = ..., number: _Optional[int] = ..., status: _Optional[_Union[VersionStatus, str]] = ...) -> None: ...

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
    __slots__ = ("llm_result", "messages", "model", "usage", "input_hash", "created_at")
    LLM_RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    INPUT_HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    llm_result: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    model: str
    usage: _common_pb2.Usage
    input_hash: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, llm_result: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., input_hash: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("request_id", "session_code", "template_name", "version_number")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_code: str
    template_name: str
    version_number: int
    def __init__(self, request_id: _Optional[str] = ..., session_code: _Optional[str] = ..., template_name: _Optional[str] = ..., version_number: _Optional[int] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class PutAnswersRequest(_message.Message):
    __slots__ = ("request_id", "session_code", "answers")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_code: str
    answers: _containers.RepeatedCompositeFieldContainer[Answer]
    def __init__(self, request_id: _Optional[str] = ..., session_code: _Optional[str] = ..., answers: _Optional[_Iterable[_Union[Answer, _Mapping]]] = ...) -> None: ...

class PutAnswersResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("request_id", "session_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_code: str
    def __init__(self, request_id: _Optional[str] = ..., session_code: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class SaveSessionResultRequest(_message.Message):
    __slots__ = ("request_id", "session_code", "result")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_CODE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_code: str
    result: SessionResult
    def __init__(self, request_id: _Optional[str] = ..., session_code: _Optional[str] = ..., result: _Optional[_Union[SessionResult, _Mapping]] = ...) -> None: ...

class SaveSessionResultResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: SessionResult
    def __init__(self, result: _Optional[_Union[SessionResult, _Mapping]] = ...) -> None: ...

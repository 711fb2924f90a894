from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

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

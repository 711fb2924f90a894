from llmmesh.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationSpec(_message.Message):
    __slots__ = ("model", "system", "prompt", "params")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    model: str
    system: str
    prompt: str
    params: _common_pb2.SamplingParams
    def __init__(self, model: _Optional[str] = ..., system: _Optional[str] = ..., prompt: _Optional[str] = ..., params: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ...) -> None: ...

class RunGenerationRequest(_message.Message):
    __slots__ = ("request_id", "spec")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    spec: GenerationSpec
    def __init__(self, request_id: _Optional[str] = ..., spec: _Optional[_Union[GenerationSpec, _Mapping]] = ...) -> None: ...

class RunGenerationResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _common_pb2.GenerationResult
    def __init__(self, result: _Optional[_Union[_common_pb2.GenerationResult, _Mapping]] = ...) -> None: ...

class StreamGenerationRequest(_message.Message):
    __slots__ = ("request_id", "spec")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    spec: GenerationSpec
    def __init__(self, request_id: _Optional[str] = ..., spec: _Optional[_Union[GenerationSpec, _Mapping]] = ...) -> None: ...

class StreamGenerationResponse(_message.Message):
    __slots__ = ("delta", "result")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    delta: _common_pb2.TokenDelta
    result: _common_pb2.GenerationResult
    def __init__(self, delta: _Optional[_Union[_common_pb2.TokenDelta, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.GenerationResult, _Mapping]] = ...) -> None: ...

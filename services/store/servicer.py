"""StoreService gRPC adapter: protobuf in, repository call, protobuf out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.v1 import common_pb2, store_pb2, store_pb2_grpc

from services.common.enums import ROLE_NAMES, ROLE_VALUES, VERSION_STATUS_NAMES, VERSION_STATUS_VALUES
from services.store import models
from services.store.errors import InvalidStoreRequest
from services.store.repository import NewAnswer, NewResult, Repository

_OPTION_FIELDS = ("model", "max_tokens", "temperature", "top_p", "seed")


def _role_name(role: common_pb2.Role) -> str:
    name = ROLE_NAMES.get(role)
    if name is None:
        raise InvalidStoreRequest("every stored message needs a role: system, user or assistant")
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
    return data


def _options_to_proto(data: dict[str, Any]) -> store_pb2.LlmOptions:
    return store_pb2.LlmOptions(
        **{k: data[k] for k in _OPTION_FIELDS if data.get(k) is not None}, stop=data.get("stop", [])
    )


def version_to_proto(version: models.TemplateVersion) -> store_pb2.TemplateVersion:
    return store_pb2.TemplateVersion(
        id=version.id,
        template_name=version.template.name,
        number=version.number,
        status=VERSION_STATUS_VALUES[version.status],
        system_prompt=version.system_prompt,
        user_prompt_template=version.user_prompt_template,
        llm_options=None if version.llm_options is None else _options_to_proto(version.llm_options),
        options=[store_pb2.VersionOption(key=o.key, label=o.label) for o in version.options],
        created_at=_timestamp(version.created_at),
        published_at=_timestamp(version.published_at),
    )


def result_to_proto(result: models.SessionResult) -> store_pb2.SessionResult:
    return store_pb2.SessionResult(
        llm_result=result.llm_result,
        messages=[
            common_pb2.ChatMessage(role=ROLE_VALUES[m["role"]], content=m["content"]) for m in result.messages
        ],
        model=result.model,
        usage=common_pb2.Usage(**result.usage),
        input_hash=result.input_hash,
        created_at=_timestamp(result.created_at),
    )


def session_to_proto(session: models.Session) -> store_pb2.Session:
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


def template_to_proto(template: models.PromptTemplate) -> store_pb2.Template:
    return store_pb2.Template(
        name=template.name,
        description=template.description,
        created_at=_timestamp(template.created_at),
        versions=[version_to_proto(v) for v in template.versions],
    )


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

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
        template = await self.repository.create_template(request.name, request.description)
        return store_pb2.CreateTemplateResponse(template=template_to_proto(template))

    async def GetTemplate(
        self, request: store_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetTemplateResponse:
        template = await self.repository.get_template(request.name)
        return store_pb2.GetTemplateResponse(template=template_to_proto(template))

    async def GetVersion(
        self, request: store_pb2.GetVersionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetVersionResponse:
        version = await self.repository.get_version(request.template_name, request.number)
        return store_pb2.GetVersionResponse(version=version_to_proto(version))

    async def AddVersion(
        self, request: store_pb2.AddVersionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.AddVersionResponse:
        version = await self.repository.add_version(
            request.template_name,
            system_prompt=request.system_prompt if request.HasField("system_prompt") else None,
            user_prompt_template=request.user_prompt_template
            if request.HasField("user_prompt_template")
            else None,
            llm_options=_options_to_json(request.llm_options) if request.HasField("llm_options") else None,
            options=[(o.key, o.label) for o in request.options],
        )
        return store_pb2.AddVersionResponse(version=version_to_proto(version))

    async def SetVersionStatus(
        self, request: store_pb2.SetVersionStatusRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SetVersionStatusResponse:
        status = VERSION_STATUS_NAMES.get(request.status)
        if status is None:
            raise InvalidStoreRequest("status must be DRAFT, PUBLISHED or ARCHIVED")
        version = await self.repository.set_version_status(request.template_name, request.number, status)
        return store_pb2.SetVersionStatusResponse(version=version_to_proto(version))

    async def CreateSession(
        self, request: store_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.CreateSessionResponse:
        session = await self.repository.create_session(
            request.session_code, request.template_name, request.version_number
        )
        return store_pb2.CreateSessionResponse(session=session_to_proto(session))

    async def PutAnswers(
        self, request: store_pb2.PutAnswersRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.PutAnswersResponse:
        answers = [NewAnswer(a.option_key, a.value) for a in request.answers]
        session = await self.repository.put_answers(request.session_code, answers)
        return store_pb2.PutAnswersResponse(session=session_to_proto(session))

    async def GetSession(
        self, request: store_pb2.GetSessionRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.GetSessionResponse:
        session = await self.repository.get_session(request.session_code)
        return store_pb2.GetSessionResponse(session=session_to_proto(session))

    async def SaveSessionResult(
        self, request: store_pb2.SaveSessionResultRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.SaveSessionResultResponse:
        result = request.result
        saved = await self.repository.save_result(
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
            ),
        )
        return store_pb2.SaveSessionResultResponse(result=result_to_proto(saved))

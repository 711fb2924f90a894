"""Transport for templates and sessions: management calls go to the store, session runs to the orchestrator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from google.protobuf.timestamp_pb2 import Timestamp
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2
from sse_starlette import ServerSentEvent

from services.common import results
from services.common.enums import VERSION_STATUS_NAMES
from services.gateway.auth.admission import charge, generation_slot
from services.gateway.calls import orchestrator, store, stream_timeout_s
from services.gateway.errors import error_responses
from services.gateway.generate.protocol import StreamDelta
from services.gateway.jobs.submission import ACCEPTED, accepted, job_options
from services.gateway.paging import AFTER, LIMIT, Page, page_of
from services.gateway.sessions import protocol as api
from services.gateway.streaming import sse_from_stream

JSON = "application/json"
# A version number in a path: int32 on the wire, so a larger one is refused as a bad field (not a 500).
VersionNumber = Annotated[int, Path(ge=1, le=api.MAX_VERSION, description="The version's number, from 1.")]

# Included under the REST API's prefix (GATEWAY_API_PREFIX, /api/v1 by default). Templates and
# versions are edited by operators (the templates scope) and read by them and by the applications that
# run sessions on them (the sessions scope, e.g. to show a version's options), so a front end's key
# need not be able to edit templates.
templates_router = APIRouter(tags=["templates"])
template_reads_router = APIRouter(tags=["templates"])
router = APIRouter(tags=["sessions"])
# Included at the root: the path the first users' diagnostic front end calls for a session run,
# POST /sessions/{session_code}/llm, answered by the same handler as the prefixed one.
unprefixed_router = APIRouter(tags=["sessions"])


def _created(stamp: Timestamp) -> datetime:
    """A creation time, always set by the store."""
    return results.timestamp(stamp) or datetime.now(UTC)


def _options(options: store_pb2.LlmOptions) -> api.LlmOptions:
    return api.LlmOptions(
        model=options.model,
        max_tokens=options.max_tokens or None,
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        seed=options.seed if options.HasField("seed") else None,
        stop=list(options.stop) or None,
        knowledge_bases=list(options.knowledge_bases) or None,
        json_schema=json.loads(options.json_schema) if options.HasField("json_schema") else None,
    )


def _version(version: store_pb2.TemplateVersion) -> api.Version:
    return api.Version(
        template=version.template_name,
        number=version.number,
        status=cast(api.VersionStatus, VERSION_STATUS_NAMES[version.status]),
        system_prompt=version.system_prompt if version.HasField("system_prompt") else None,
        user_prompt_template=version.user_prompt_template
        if version.HasField("user_prompt_template")
        else None,
        llm_options=_options(version.llm_options) if version.HasField("llm_options") else None,
        options=[api.VersionOption(key=o.key, label=o.label) for o in version.options],
        created_at=_created(version.created_at),
        published_at=results.timestamp(version.published_at, version.HasField("published_at")),
    )


def _template(template: store_pb2.Template) -> api.Template:
    return api.Template(
        name=template.name,
        description=template.description,
        created_at=_created(template.created_at),
        versions=[_version(v) for v in template.versions],
    )


def _latest_result(session: store_pb2.Session) -> results.SessionRun | None:
    """The session's stored result, as a run that reused it would return it."""
    if not session.HasField("latest_result"):
        return None
    return results.SessionRun.from_stored(session.session_code, session.latest_result)


def _session(session: store_pb2.Session) -> api.Session:
    return api.Session(
        session_code=session.session_code,
        template=session.version.template_name,
        version=session.version.number,
        version_status=cast(api.VersionStatus, VERSION_STATUS_NAMES[session.version.status]),
        answers=[api.Answer(option=a.option_key, label=a.label, value=a.value) for a in session.answers],
        latest_result=_latest_result(session),
        created_at=_created(session.created_at),
    )


@templates_router.post(
    "/templates", status_code=201, response_model=api.Template, responses=error_responses(409)
)
async def create_template(body: api.CreateTemplate, request: Request) -> api.Template:
    """Create a prompt template; its versions are added next."""
    response = await store(request).create_template(
        store_pb2.CreateTemplateRequest(name=body.name, description=body.description)
    )
    return _template(response.template)


@template_reads_router.get("/templates", response_model=Page[api.Template])
async def list_templates(
    request: Request, limit: int = LIMIT, after: str | None = AFTER
) -> Page[api.Template]:
    """The project's templates in name order, each with all its versions."""
    response = await store(request).list_templates(
        store_pb2.ListTemplatesRequest(limit=limit, after=after or "")
    )
    templates = [_template(t) for t in response.templates]
    return page_of(request, templates, lambda template: template.name, response.has_more)


@template_reads_router.get("/templates/{name}", response_model=api.Template, responses=error_responses(404))
async def get_template(name: str, request: Request) -> api.Template:
    """A template with all its versions."""
    response = await store(request).get_template(store_pb2.GetTemplateRequest(name=name))
    return _template(response.template)


@templates_router.post(
    "/templates/{name}/versions", status_code=201, response_model=api.Version, responses=error_responses(404)
)
async def add_version(name: str, body: api.CreateVersion, request: Request) -> api.Version:
    """Add a DRAFT version: system prompt, user-prompt template, model options and answer choices."""
    response = await store(request).add_version(
        store_pb2.AddVersionRequest(template_name=name, **_content(body))
    )
    return _version(response.version)


@templates_router.put(
    "/templates/{name}/versions/{number}",
    response_model=api.Version,
    responses=error_responses(404, 409, descriptions={409: "The version is not a DRAFT"}),
)
async def update_draft(
    name: str, number: VersionNumber, body: api.CreateVersion, request: Request
) -> api.Version:
    """Replace a DRAFT version's content (the same fields as adding one); a PUBLISHED or ARCHIVED
    version is final: 409 `version_not_draft`."""
    response = await store(request).update_draft_version(
        store_pb2.UpdateDraftVersionRequest(template_name=name, number=number, **_content(body))
    )
    return _version(response.version)


def _content(body: api.CreateVersion) -> dict[str, Any]:
    """A version's content as AddVersion and UpdateDraftVersion take it."""
    options = body.llm_options
    return {
        "system_prompt": body.system_prompt,
        "user_prompt_template": body.user_prompt_template,
        "llm_options": None
        if options is None
        else store_pb2.LlmOptions(
            model=options.model,
            max_tokens=options.max_tokens or 0,
            temperature=options.temperature,
            top_p=options.top_p,
            seed=options.seed,
            stop=options.stop or [],
            knowledge_bases=options.knowledge_bases or [],
            json_schema=None if options.json_schema is None else json.dumps(options.json_schema),
        ),
        "options": [store_pb2.VersionOption(key=o.key, label=o.label) for o in body.options],
    }


async def _version_of(request: Request, name: str, number: int) -> store_pb2.TemplateVersion:
    response = await store(request).get_version(
        store_pb2.GetVersionRequest(template_name=name, number=number)
    )
    return response.version


@template_reads_router.get(
    "/templates/{name}/versions/{number}", response_model=api.Version, responses=error_responses(404)
)
async def get_version(name: str, number: VersionNumber, request: Request) -> api.Version:
    return _version(await _version_of(request, name, number))


@template_reads_router.get(
    "/templates/{name}/versions/{number}/options",
    response_model=list[api.VersionOption],
    responses=error_responses(404),
)
async def list_options(name: str, number: VersionNumber, request: Request) -> list[api.VersionOption]:
    """The answer choices a version offers."""
    return _version(await _version_of(request, name, number)).options


async def _set_status(
    request: Request, name: str, number: int, status: store_pb2.VersionStatus
) -> api.Version:
    response = await store(request).set_version_status(
        store_pb2.SetVersionStatusRequest(template_name=name, number=number, status=status)
    )
    return _version(response.version)


@templates_router.post(
    "/templates/{name}/versions/{number}/publish",
    response_model=api.Version,
    responses=error_responses(404, 409),
)
async def publish_version(name: str, number: VersionNumber, request: Request) -> api.Version:
    """DRAFT → PUBLISHED: sessions can now run on it; its content is final."""
    return await _set_status(request, name, number, store_pb2.VERSION_STATUS_PUBLISHED)


@templates_router.post(
    "/templates/{name}/versions/{number}/archive",
    response_model=api.Version,
    responses=error_responses(404, 409),
)
async def archive_version(name: str, number: VersionNumber, request: Request) -> api.Version:
    """Retire a version: its sessions can no longer run."""
    return await _set_status(request, name, number, store_pb2.VERSION_STATUS_ARCHIVED)


@router.post("/sessions", status_code=201, response_model=api.Session, responses=error_responses(404, 409))
async def create_session(body: api.CreateSession, request: Request) -> api.Session:
    """Start a session on a template version (the newest published one unless a number is given)."""
    response = await store(request).create_session(
        store_pb2.CreateSessionRequest(
            session_code=body.session_code or "",
            template_name=body.template,
            version_number=body.version or 0,
        )
    )
    return _session(response.session)


@router.get("/sessions/{session_code}", response_model=api.Session, responses=error_responses(404))
async def get_session(session_code: str, request: Request) -> api.Session:
    """A session with its answers and latest LLM result."""
    response = await store(request).get_session(store_pb2.GetSessionRequest(session_code=session_code))
    return _session(response.session)


@router.put(
    "/sessions/{session_code}/answers", response_model=api.Session, responses=error_responses(400, 404)
)
async def put_answers(session_code: str, body: api.PutAnswers, request: Request) -> api.Session:
    """Replace the session's answers; each names one of its version's options."""
    response = await store(request).put_answers(
        store_pb2.PutAnswersRequest(
            session_code=session_code,
            answers=[store_pb2.Answer(option_key=a.option, value=a.value) for a in body.answers],
        )
    )
    return _session(response.session)


def _sampling(body: api.RunSession) -> orchestrator_pb2.SamplingOverride:
    """The run's override of its version's sampling (empty: the version's own)."""
    return orchestrator_pb2.SamplingOverride(temperature=body.temperature, seed=body.seed)


async def run_session(
    session_code: str, request: Request, body: Annotated[api.RunSession | None, Body()] = None
) -> Any:
    """Turn the session's answers into its LLM result.

    The same inputs as the stored result return it with `cached: true` and no model call, unless
    `force_regenerate`. With `stream: true` the response is SSE: `delta` events while a new result is
    generated, then one `done` event carrying the same object as the JSON response. With `async: true`
    the run is queued as a durable job: 202 with its `status_url`."""
    body = body or api.RunSession()
    if body.run_async:
        submitted = await orchestrator(request).submit_session_run(
            orchestrator_pb2.SubmitSessionRunRequest(
                session_code=session_code,
                force_regenerate=body.force_regenerate,
                options=job_options(request, body),
                sampling=_sampling(body),
            )
        )
        return accepted(request, submitted.job)
    if not body.stream:
        response = await orchestrator(request).run_session(
            orchestrator_pb2.RunSessionRequest(
                session_code=session_code, force_regenerate=body.force_regenerate, sampling=_sampling(body)
            )
        )
        if not response.run.cached:
            charge(request, response.run.usage)
        # Serialized here: a model returned to FastAPI is dumped, validated against response_model
        # and dumped again, three passes where one makes the same JSON (a result screen reloaded is
        # the first users' most frequent request; response_model still documents it).
        return Response(results.SessionRun.from_proto(response.run).model_dump_json(), media_type=JSON)
    stream = orchestrator(request).stream_session(
        orchestrator_pb2.StreamSessionRequest(
            session_code=session_code, force_regenerate=body.force_regenerate, sampling=_sampling(body)
        ),
        stream_timeout_s(request),
    )

    def render(event: orchestrator_pb2.StreamSessionResponse) -> list[ServerSentEvent]:
        if event.HasField("delta"):
            return [ServerSentEvent(StreamDelta(text=event.delta.text).model_dump_json(), event="delta")]
        if not event.run.cached:
            charge(request, event.run.usage)
        return [ServerSentEvent(results.SessionRun.from_proto(event.run).model_dump_json(), event="done")]

    return await sse_from_stream(request, stream, render)


# One handler, one description, two paths.
for _router in (router, unprefixed_router):
    _router.post(
        "/sessions/{session_code}/llm",
        response_model=results.SessionRun,
        dependencies=[Depends(generation_slot)],
        responses={
            **error_responses(404, 409, 502, 504),
            **ACCEPTED,
            200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream=true"},
        },
    )(run_session)

"""Session runs: a session's answers, rendered through its template version, into a cached LLM result."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from jinja2 import TemplateError
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.enums import VERSION_STATUS_NAMES
from services.common.prompts import compiled
from services.orchestrator.errors import (
    InvalidModelOutput,
    InvalidUserPromptTemplate,
    MissingLlmOptions,
    MissingSystemPrompt,
    NoAnswers,
    VersionNotPublished,
)
from services.orchestrator.metrics import CACHE_BYPASS, CACHE_HIT, CACHE_MISS
from services.orchestrator.routing import Router
from services.store.client import StoreClient

log = logging.getLogger("llmmesh.orchestrator.sessions")


@dataclass(frozen=True)
class RunPlan:
    """What a session run sends to the model, and the hash that identifies those inputs."""

    spec: orchestrator_pb2.GenerationSpec
    messages: list[common_pb2.ChatMessage]
    input_hash: str
    # What else the hash covers: the version and its options (the model, sampling, schema).
    version_id: int
    options: dict[str, Any]

    def grounded(self, spec: orchestrator_pb2.GenerationSpec) -> RunPlan:
        """The plan sending `spec`, whose system instruction carries the chunks retrieved for this
        run: the messages and the hash cover them, so a result made from other documents' chunks is
        not reused (the knowledge bases' documents changed)."""
        messages = [
            common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=spec.system),
            *self.messages[1:],
        ]
        return RunPlan(
            spec,
            messages,
            _input_hash(self.version_id, messages, self.options),
            self.version_id,
            self.options,
        )


def _input_hash(version_id: int, messages: list[common_pb2.ChatMessage], options: dict[str, Any]) -> str:
    inputs = {
        "version_id": version_id,
        "messages": [[m.role, m.content] for m in messages],
        "llm_options": options,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def render_user_prompt(version: store_pb2.TemplateVersion, answers: list[store_pb2.Answer]) -> str:
    context = [{"key": a.option_key, "label": a.label, "value": a.value} for a in answers]
    if not version.HasField("user_prompt_template"):
        return "\n".join(
            f"- {a['label']}: {a['value']}" if a["value"] else f"- {a['label']}" for a in context
        )
    where = f"the user_prompt_template of version {version.number} of {version.template_name!r}"
    # Besides Jinja's own errors, an expression fails with Python's on answers it cannot handle
    # ("{{ a.value + 1 }}" on text): the template's fault, never an internal error.
    try:
        prompt = compiled(version.user_prompt_template).render(answers=context)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise InvalidUserPromptTemplate(f"{where} cannot be rendered: {exc}") from exc
    if not prompt.strip():
        # Caught here, a session check (and a job submission) fails at once, as FAILED_PRECONDITION;
        # the router would refuse it only at run time, as a malformed conversation of the caller's.
        raise InvalidUserPromptTemplate(f"{where} rendered an empty prompt")
    return prompt


def plan_run(
    session: store_pb2.Session, sampling: orchestrator_pb2.SamplingOverride | None = None
) -> RunPlan:
    """Check the session can run and build its messages; raises FAILED_PRECONDITION errors naming what is missing.

    `sampling` replaces the version's temperature or seed for this run; the options it makes are
    what the input hash covers, so a result is reused only for the same ones."""
    version = session.version
    where = f"version {version.number} of template {version.template_name!r}"
    if version.status != store_pb2.VERSION_STATUS_PUBLISHED:
        raise VersionNotPublished(
            f"{where} is {VERSION_STATUS_NAMES[version.status]}; only a PUBLISHED version can run"
        )
    if not version.HasField("system_prompt") or not version.system_prompt.strip():
        raise MissingSystemPrompt(f"{where} has no system_prompt")
    if not version.HasField("llm_options"):
        raise MissingLlmOptions(f"{where} has no llm_options")
    options = store_pb2.LlmOptions()
    options.CopyFrom(version.llm_options)
    if sampling is not None and sampling.HasField("temperature"):
        options.temperature = sampling.temperature
    if sampling is not None and sampling.HasField("seed"):
        options.seed = sampling.seed
    if not options.model:
        raise MissingLlmOptions(f"{where} has no llm_options.model")
    if not session.answers:
        raise NoAnswers(f"session {session.session_code!r} has no answers yet")
    user_prompt = render_user_prompt(version, list(session.answers))
    params = common_pb2.SamplingParams(
        max_tokens=options.max_tokens,
        temperature=options.temperature if options.HasField("temperature") else None,
        top_p=options.top_p if options.HasField("top_p") else None,
        seed=options.seed if options.HasField("seed") else None,
        stop=options.stop,
    )
    messages = [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=version.system_prompt),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=user_prompt),
    ]
    hashed = json_format.MessageToDict(options)
    spec = orchestrator_pb2.GenerationSpec(
        model=options.model, system=version.system_prompt, prompt=user_prompt, params=params
    )
    if options.knowledge_bases:
        spec.knowledge.knowledge_base_ids.extend(options.knowledge_bases)
    if options.HasField("json_schema"):
        # Enforced where the model can (the local engine), and checked and retried once by the router
        # on every model, as a chat completion's json_schema response_format is.
        spec.constraint.json_schema.CopyFrom(
            common_pb2.JsonSchemaConstraint(
                schema=options.json_schema, strict=True, name=version.template_name
            )
        )
    return RunPlan(spec, messages, _input_hash(version.id, messages, hashed), version.id, hashed)


def structured_result(plan: RunPlan, result: common_pb2.GenerationResult) -> str:
    """The result of a run whose version asks for a JSON schema, as the JSON to store beside its text.

    The router has checked every output that ended on its own against the schema; one cut by the
    token limit has not been, and is no result: it is not stored."""
    if result.finish_reason == common_pb2.FINISH_REASON_LENGTH:
        raise InvalidModelOutput(
            f"model {result.model} reached max_tokens ({plan.spec.params.max_tokens or 'the default'}) before "
            "the JSON result ended: raise llm_options.max_tokens or bound the schema's strings and lists"
        )
    try:
        value = json.loads(result.text)
    except ValueError:
        raise InvalidModelOutput(
            f"model {result.model} broke the output constraint: the output is not JSON"
        ) from None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def reusable_result(
    session: store_pb2.Session, plan: RunPlan, force_regenerate: bool
) -> store_pb2.SessionResult | None:
    """The session's stored result when it was made from exactly the plan's inputs and the caller did
    not ask for a new one; None means generate."""
    if force_regenerate or not session.HasField("latest_result"):
        return None
    cached = session.latest_result
    return cached if cached.input_hash == plan.input_hash else None


class SessionRuns:
    """Loads a session from the store, reuses or generates its result, and stores what it generated."""

    def __init__(self, store: StoreClient, router: Router) -> None:
        self._store = store
        self._router = router

    async def check(self, session_code: str) -> None:
        """Raise now what a run of the session would fail on (unknown session, draft version, no answers)."""
        response = await self._store.get_session(
            store_pb2.GetSessionRequest(session_code=session_code),
        )
        plan_run(response.session)

    async def stream(
        self,
        session_code: str,
        force_regenerate: bool,
        caller_time_remaining: float | None = None,
        one_shot: bool = False,
        sampling: orchestrator_pb2.SamplingOverride | None = None,
    ) -> AsyncGenerator[common_pb2.TokenDelta | orchestrator_pb2.SessionRun, None]:
        """Deltas while a new result is generated, then the run; a cached run yields only the run.

        `one_shot`: the caller wants only the run, so a provider may answer in one shot. `sampling`:
        this run's temperature or seed instead of the version's (see plan_run).
        """
        response = await self._store.get_session(
            store_pb2.GetSessionRequest(session_code=session_code),
        )
        session = response.session
        plan = plan_run(session, sampling)
        if plan.spec.HasField("knowledge"):
            # Retrieved before the result is looked up: the chunks are part of what it was made from.
            plan = plan.grounded(await self._router.ground(plan.spec))
        cached = reusable_result(session, plan, force_regenerate)
        if cached is not None:
            log.info("session result reused", extra={"cached": True})
            CACHE_HIT.inc()
            yield _run(session_code, cached, cached=True)
            return
        (CACHE_BYPASS if force_regenerate else CACHE_MISS).inc()

        result = None
        async for event in self._router.stream(plan.spec, caller_time_remaining, one_shot):
            if event.HasField("delta"):
                yield event.delta
            else:
                result = event.result
        assert result is not None, "the router ends every stream it does not fail with a result"

        json_result = structured_result(plan, result) if plan.spec.HasField("constraint") else None
        saved = await self._store.save_session_result(
            store_pb2.SaveSessionResultRequest(
                session_code=session_code,
                result=store_pb2.SessionResult(
                    llm_result=result.text,
                    messages=plan.messages,
                    model=result.model,
                    usage=result.usage,
                    input_hash=plan.input_hash,
                    json_result=json_result,
                ),
            ),
        )
        yield _run(session_code, saved.result, cached=False)

    async def run(
        self,
        session_code: str,
        force_regenerate: bool,
        caller_time_remaining: float | None = None,
        sampling: orchestrator_pb2.SamplingOverride | None = None,
    ) -> orchestrator_pb2.SessionRun:
        run = orchestrator_pb2.SessionRun()
        events = self.stream(session_code, force_regenerate, caller_time_remaining, True, sampling)
        async for event in events:
            if isinstance(event, orchestrator_pb2.SessionRun):
                run = event
        return run


def _run(session_code: str, result: store_pb2.SessionResult, cached: bool) -> orchestrator_pb2.SessionRun:
    return orchestrator_pb2.SessionRun(
        session_code=session_code,
        llm_result=result.llm_result,
        messages=result.messages,
        cached=cached,
        model=result.model,
        usage=result.usage,
        created_at=result.created_at,
        json_result=result.json_result if result.HasField("json_result") else None,
    )

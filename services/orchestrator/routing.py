"""Routing: a request resolved to a route of the registry and run tier by tier.

A route is an ordered list of tiers: canned replies (a pattern → a fixed text, no model call) and
models. Each model tier is tried with retries on transient failures (bounded exponential backoff
with jitter), and a request falls to the next tier when a tier keeps failing transiently or cannot
serve at all; a permanent error ends the request at once. Once a stream has sent text to the client,
no other model's output is spliced after it: the failure ends the stream instead.

The failure's gRPC status, chosen once where the failure was classified, decides:
  UNAVAILABLE, upstream DEADLINE_EXCEEDED, an empty reply  -> retry, then fall back
  RESOURCE_EXHAUSTED, a backend that crashed               -> fall back at once
  anything else (bad request, auth, content filter, ...)   -> fail
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

import grpc
import jsonschema
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.config import ConfigError
from services.common.errors import (
    UPSTREAM_CODE_PREFIX,
    IncompleteGeneration,
    InvalidGenerationRequest,
    MeshError,
    ModelNotFound,
    RemoteError,
    ToolsNotSupported,
    UnsupportedTask,
    UpstreamError,
    shown,
)
from services.common.registry import Registry, Tier
from services.inference.client import InferenceClient
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.errors import (
    AllTiersFailed,
    EmptyModelResponse,
    GenerationTimeout,
    InvalidModelOutput,
    NoTierAvailable,
)
from services.orchestrator.knowledge import KnowledgeBases, with_sources
from services.orchestrator.metrics import GenerationMeter

log = logging.getLogger("llmmesh.orchestrator.routing")

# What a backend that crashed (an error with no code of its own) is reported as.
_CRASHED = "upstream_error"


class Outcome(enum.Enum):
    RETRY = "retry"
    FALL_BACK = "fall_back"
    FAIL = "fail"


_PASSED_OVER = (_CRASHED, ToolsNotSupported.code, "unsupported_output_control")


def output_problem(constraint: common_pb2.OutputConstraint, text: str) -> str | None:
    """What is wrong with a finished output under its constraint (None: nothing). A grammar is the
    engine's to enforce; JSON is checked here, against the schema when there is one."""
    kind = constraint.WhichOneof("kind")
    if kind not in ("json_object", "json_schema"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return "the output is not JSON"
    if kind == "json_object":
        return None if isinstance(value, dict) else "the output is not a JSON object"
    try:
        schema = json.loads(constraint.json_schema.schema)
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        return f"the output does not match the schema at {where}: {exc.message}"
    except (ValueError, jsonschema.SchemaError):
        return None  # the inference service refuses a bad schema before generating
    return None


def outcome_of(error: MeshError) -> Outcome:
    """What a failed attempt allows, read from its status and code (see the module docstring)."""
    if error.status == grpc.StatusCode.UNAVAILABLE or isinstance(
        error, EmptyModelResponse | InvalidModelOutput
    ):
        return Outcome.RETRY
    if error.status == grpc.StatusCode.DEADLINE_EXCEEDED and error.code.startswith(UPSTREAM_CODE_PREFIX):
        return Outcome.RETRY
    # A model that cannot call tools or constrain its output is passed over for the next tier, which may.
    if error.status == grpc.StatusCode.RESOURCE_EXHAUSTED or error.code in _PASSED_OVER:
        return Outcome.FALL_BACK
    return Outcome.FAIL


def conversation_of(spec: orchestrator_pb2.GenerationSpec) -> list[common_pb2.ChatMessage]:
    """The turns a spec asks the model to answer: system, earlier turns, then the prompt as the user's.
    An assistant turn's function calls that came as turns of their own (the Responses API sends each
    call as an item, after the assistant's text) join that turn: every provider wants one assistant
    turn holding the calls its tool turns answer."""
    messages: list[common_pb2.ChatMessage] = []
    if spec.system:
        messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=spec.system))
    for message in spec.messages:
        previous = messages[-1] if messages else None
        if (
            previous is not None
            and previous.role == message.role == common_pb2.ROLE_ASSISTANT
            and message.tool_calls
            and not message.content
        ):
            joined = common_pb2.ChatMessage()
            joined.CopyFrom(previous)
            joined.tool_calls.extend(message.tool_calls)
            messages[-1] = joined
        else:
            messages.append(message)
    if spec.prompt:
        messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=spec.prompt))
    return messages


def user_text(spec: orchestrator_pb2.GenerationSpec) -> str:
    """What the user asked: the raw prompt, or the conversation's last turn, which must be theirs."""
    if spec.raw:
        if spec.messages or spec.system:
            raise InvalidGenerationRequest("a raw prompt cannot be combined with system or messages")
        if spec.HasField("tooling"):
            raise InvalidGenerationRequest("a raw prompt cannot call tools: send messages")
        text = spec.prompt
    else:
        messages = conversation_of(spec)
        if not messages or messages[-1].role not in (common_pb2.ROLE_USER, common_pb2.ROLE_TOOL):
            raise InvalidGenerationRequest("the conversation must end with a user message (or a tool result)")
        if any(m.role == common_pb2.ROLE_UNSPECIFIED for m in messages):
            raise InvalidGenerationRequest("every message needs a role: system, user, assistant or tool")
        _check_tool_turns(messages, spec.HasField("tooling"))
        if messages[-1].role == common_pb2.ROLE_TOOL:
            return ""  # a tool's result may be empty; no canned reply answers one
        text = messages[-1].content
    if not text.strip():
        raise InvalidGenerationRequest("prompt must not be empty")
    return text


def _check_tool_turns(messages: list[common_pb2.ChatMessage], tooling: bool) -> None:
    """The tool turns of a conversation are what every provider accepts: each answers, once, a call an
    earlier assistant turn made, and every call is answered before the conversation goes on; a
    conversation that holds calls comes with the tools (providers refuse calls of undeclared tools)."""
    pending: set[str] = set()
    answered: set[str] = set()
    for message in messages:
        if message.role == common_pb2.ROLE_TOOL:
            if message.tool_call_id in answered:
                raise InvalidGenerationRequest(f"tool call {message.tool_call_id!r} is answered twice")
            if message.tool_call_id not in pending:
                raise InvalidGenerationRequest(
                    f"a tool message answers tool call {message.tool_call_id!r}, which no earlier assistant turn made"
                )
            pending.discard(message.tool_call_id)
            answered.add(message.tool_call_id)
            continue
        if pending and message.role != common_pb2.ROLE_SYSTEM:
            raise InvalidGenerationRequest(
                f"tool call {sorted(pending)[0]!r} has no tool message answering it before the next turn"
            )
        if message.role == common_pb2.ROLE_ASSISTANT and message.tool_calls:
            if not tooling:
                raise InvalidGenerationRequest(
                    "the conversation holds tool calls: send the tools they called"
                )
            pending.update(call.id for call in message.tool_calls)


def _says_something(events: list[inference_pb2.GenerateResponse]) -> bool:
    """Whether a generation's first events hold more than blank text (a tool call counts)."""
    return any(e.HasField("tool_call") for e in events) or bool("".join(e.delta.text for e in events).strip())


def requires_tool_call(spec: orchestrator_pb2.GenerationSpec) -> bool:
    return spec.HasField("tooling") and spec.tooling.choice.mode in (
        common_pb2.ToolChoice.MODE_REQUIRED,
        common_pb2.ToolChoice.MODE_FUNCTION,
    )


async def final_result(
    events: AsyncIterator[inference_pb2.GenerateResponse],
) -> common_pb2.GenerationResult:
    """The result a generation's events end with (it carries the whole text)."""
    result = common_pb2.GenerationResult()
    async for event in events:
        if event.HasField("result"):
            result = event.result
    return result


@dataclass(frozen=True)
class Route:
    name: str
    tiers: tuple[Tier, ...]


class Router:
    """Runs generations and embeddings on the inference pools that serve the registry's models."""

    def __init__(
        self,
        registry: Registry,
        pools: dict[str, InferenceClient],
        settings: OrchestratorSettings,
    ) -> None:
        self.registry = registry
        self.routes = {name: Route(name, tuple(tiers)) for name, tiers in registry.effective_routes().items()}
        self._pools = pools
        self._settings = settings
        # Set once the knowledge bases exist: a spec naming some retrieves from them first.
        self.knowledge: KnowledgeBases | None = None

    def resolve(self, name: str) -> Route:
        """A route by name; a model's name gives a one-tier route of that model; empty, the default."""
        if not name:
            return self.routes[self.registry.default_route]
        if name in self.routes:
            return self.routes[name]
        model = self.registry.models.get(name)
        if model is None:
            known = ", ".join(sorted({*self.routes, *self.registry.models}))
            raise ModelNotFound(f"no model or route is named {shown(name)}; known: {known}")
        if model.task != "generate":
            raise UnsupportedTask(f"model {name} is an embedding model; it cannot generate")
        return Route(name, (Tier(model=name),))

    def _timeout(self, caller_time_remaining: float | None) -> float:
        """Our own limit, shortened to the caller's deadline when that comes sooner."""
        limit = self._settings.generation_timeout_s
        return limit if caller_time_remaining is None else min(limit, caller_time_remaining)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._settings.retry_max_backoff_s, self._settings.retry_backoff_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _canned_reply(self, name: str, prompt: str) -> str | None:
        for canned in self.registry.canned[name]:
            if canned.pattern.search(prompt):
                return canned.reply
        return None

    async def stream(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        caller_time_remaining: float | None = None,
        one_shot: bool = False,
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        """Deltas as they come, then the result naming the model, route and tier that served it.
        `one_shot`: the caller wants only the result, so a provider may answer in one shot.

        Closing this iterator cancels the inference call, which stops the model.
        """
        asked = user_text(spec)
        route = self.resolve(spec.model)
        sources: list[common_pb2.KnowledgeHit] = []
        if spec.HasField("knowledge"):
            sources = await self._retrieve(spec)
            spec = with_sources(spec, sources)
        meter = GenerationMeter(route.name, streamed=not one_shot)
        try:
            async for event in self._serve(spec, asked, route, meter, caller_time_remaining, one_shot):
                if event.HasField("result"):
                    event.result.sources.extend(sources)
                    meter.finished(event.result)
                else:
                    meter.token()
                yield event
        except MeshError as error:
            meter.failed(error.code)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            meter.failed("cancelled")
            raise

    async def ground(self, spec: orchestrator_pb2.GenerationSpec) -> orchestrator_pb2.GenerationSpec:
        """The spec with the chunks its knowledge bases give its prompt in its system instruction, as
        stream would send it (for a caller that needs the grounded prompt before the generation)."""
        return with_sources(spec, await self._retrieve(spec))

    async def _retrieve(self, spec: orchestrator_pb2.GenerationSpec) -> list[common_pb2.KnowledgeHit]:
        if self.knowledge is None:
            raise InvalidGenerationRequest("this orchestrator has no knowledge bases")
        return await self.knowledge.retrieve(spec.knowledge, user_text(spec))

    async def _serve(
        self,
        spec: orchestrator_pb2.GenerationSpec,
        asked: str,
        route: Route,
        meter: GenerationMeter,
        caller_time_remaining: float | None,
        one_shot: bool,
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        """The route's tiers in order: canned replies, then models with retries and fallbacks."""
        timeout = self._timeout(caller_time_remaining)
        deadline = asyncio.get_running_loop().time() + timeout
        failures: list[tuple[str, MeshError]] = []
        for index, tier in enumerate(route.tiers):
            if tier.canned:
                # A canned reply is text: it answers no request that must call a tool or whose output is
                # constrained, nor a tool's result.
                plain = not requires_tool_call(spec) and not spec.HasField("constraint") and asked
                reply = self._canned_reply(tier.canned, asked) if plain else None
                if reply is not None:
                    meter.attempting(f"canned:{tier.canned}", index)
                    yield inference_pb2.GenerateResponse(delta=common_pb2.TokenDelta(text=reply))
                    yield inference_pb2.GenerateResponse(
                        result=common_pb2.GenerationResult(
                            text=reply,
                            model=f"canned:{tier.canned}",
                            finish_reason=common_pb2.FINISH_REASON_STOP,
                            usage=common_pb2.Usage(),
                            route=route.name,
                            tier=index,
                        )
                    )
                    return
                continue
            assert tier.model is not None
            if failures:
                meter.fell_back()
            meter.attempting(tier.model, index)
            attempt = empties = 0
            while True:
                attempt += 1
                sent = False
                try:
                    async for event in self._attempt(tier.model, spec, deadline, timeout, one_shot):
                        if event.HasField("result"):
                            event.result.route, event.result.tier = route.name, index
                        sent = True
                        yield event
                    if failures:
                        log.info("served after falling back", extra={"route": route.name, "tier": index})
                    return
                except MeshError as error:
                    if sent:  # the client has this model's text: no other model's may follow it
                        raise
                    outcome = outcome_of(error)
                    log.warning(
                        "tier failed",
                        extra={
                            "route": route.name,
                            "tier": index,
                            "model": tier.model,
                            "attempt": attempt,
                            "code": error.code,
                            "outcome": outcome.value,
                        },
                    )
                    if outcome is Outcome.FAIL:
                        raise
                    if isinstance(error, EmptyModelResponse | InvalidModelOutput):
                        empties += 1
                        if empties == 1:  # an empty or invalid reply is retried once, at once
                            continue
                        error = (
                            EmptyModelResponse(f"model {tier.model} returned an empty response twice")
                            if isinstance(error, EmptyModelResponse)
                            else InvalidModelOutput(f"{error.message} (twice)")
                        )
                    elif outcome is Outcome.RETRY and attempt < self._settings.retry_attempts:
                        delay = self._backoff(attempt)
                        if asyncio.get_running_loop().time() + delay < deadline:
                            await asyncio.sleep(delay)
                            continue
                    failures.append((tier.model, error))
                    break
        raise self._exhausted(route, failures)

    @staticmethod
    def _exhausted(route: Route, failures: list[tuple[str, MeshError]]) -> MeshError:
        """The one error for a request no tier could serve."""
        if len(failures) == 1:
            return failures[0][1]  # one model tried: its own error says most
        if not failures:
            return NoTierAvailable(f"route {route.name!r}: no tier could serve the request")
        if all(error.code == ToolsNotSupported.code for _, error in failures):
            names = ", ".join(model for model, _ in failures)
            return ToolsNotSupported(f"route {route.name!r}: none of its models can call tools ({names})")
        summary = "; ".join(f"{model}: {error.code}" for model, error in failures)
        if any(error.code.startswith(UPSTREAM_CODE_PREFIX) for _, error in failures):
            return AllTiersFailed(f"route {route.name!r}: every tier failed ({summary})")
        return NoTierAvailable(f"route {route.name!r}: no tier could serve the request ({summary})")

    async def _attempt(
        self,
        model: str,
        spec: orchestrator_pb2.GenerationSpec,
        deadline: float,
        limit_s: float,
        one_shot: bool,
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        """One call to the model's pool. Leading blank deltas are held back, so an empty reply is
        known before anything reaches the client and can be retried."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise GenerationTimeout(f"the generation did not finish within {limit_s:g} s")
        request = inference_pb2.GenerateRequest(model=model, params=spec.params, one_shot=one_shot)
        if spec.HasField("tooling"):
            request.tooling.CopyFrom(spec.tooling)
        constrained = spec.HasField("constraint")
        if constrained:
            request.constraint.CopyFrom(spec.constraint)
        request.logprobs, request.top_logprobs = spec.logprobs, spec.top_logprobs
        if spec.raw:
            request.prompt = spec.prompt
        else:
            request.conversation.messages.extend(conversation_of(spec))
        pool = self.registry.models[model].pool
        held: list[inference_pb2.GenerateResponse] | None = []
        finished = False
        events = self._pools[pool].generate(request, timeout_s=remaining)
        try:
            async with aclosing(events):  # leaving early (an empty reply) cancels the call at once
                async for response in events:
                    if response.HasField("result"):
                        result = response.result
                        if not result.text.strip() and not result.tool_calls:
                            raise EmptyModelResponse(f"model {model} returned an empty response")
                        # An output cut by the token limit is the caller's to judge (OpenAI's `length`);
                        # a turn that calls tools has no answer yet for the constraint to judge.
                        judged = result.finish_reason not in (
                            common_pb2.FINISH_REASON_LENGTH,
                            common_pb2.FINISH_REASON_TOOL_CALLS,
                        )
                        if constrained and judged:
                            problem = output_problem(spec.constraint, result.text)
                            if problem:
                                raise InvalidModelOutput(
                                    f"model {model} broke the output constraint: {problem}"
                                )
                        finished = True
                    if held is not None:
                        held.append(response)
                        # A caller waiting for the whole result gets nothing of a constrained output
                        # before it is checked, so an invalid one can be retried.
                        if not finished and (not _says_something(held) or (constrained and one_shot)):
                            continue
                        for waiting in held:
                            yield waiting
                        held = None
                    else:
                        yield response
        except RemoteError as error:
            raise self._error_of(error, model, pool, limit_s) from error
        if not finished:
            raise IncompleteGeneration(f"the stream of model {model} ended without a result")

    @staticmethod
    def _error_of(remote: RemoteError, model: str, pool: str, limit_s: float) -> MeshError:
        """What a pool's failure means for this generation (its own deadline, a backend crash)."""
        error: MeshError = remote
        if error.status == grpc.StatusCode.DEADLINE_EXCEEDED and not error.code.startswith(
            UPSTREAM_CODE_PREFIX
        ):
            return GenerationTimeout(f"the generation did not finish within {limit_s:g} s")
        if error.status in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and error.code == "internal":
            error = UpstreamError(f"model {model} failed to generate a response")
        log.warning(
            "inference call failed",
            extra={"model": model, "pool": pool, "status": remote.status.name, "code": error.code},
        )
        return error

    async def run(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> common_pb2.GenerationResult:
        """Run to completion and return the final result (which carries the whole text)."""
        return await final_result(self.stream(spec, caller_time_remaining, one_shot=True))

    async def count_tokens(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> inference_pb2.CountTokensResponse:
        """The prompt tokens of the spec on the model that would serve it first: the route's first
        model tier (canned replies read no tokens; a fallback model may count differently)."""
        user_text(spec)  # only a spec that could run is counted
        route = self.resolve(spec.model)
        model = next((tier.model for tier in route.tiers if tier.model), None)
        if model is None:
            raise InvalidGenerationRequest(f"route {route.name!r} has no model to count tokens with")
        request = inference_pb2.CountTokensRequest(model=model)
        if spec.raw:
            request.prompt = spec.prompt
        else:
            request.conversation.messages.extend(conversation_of(spec))
        pool = self.registry.models[model].pool
        timeout = self._timeout(caller_time_remaining)
        try:
            return await self._pools[pool].count_tokens(request, timeout_s=timeout)
        except RemoteError as remote:
            raise self._error_of(remote, model, pool, timeout) from remote

    async def embed(self, model: str, inputs: list[str]) -> inference_pb2.EmbedResponse:
        """Embeddings from an embedding model, retried like a generation tier (no fallback)."""
        config = self.registry.models.get(model)
        if config is None:
            embedders = ", ".join(sorted(n for n, m in self.registry.models.items() if m.task == "embed"))
            raise ModelNotFound(
                f"no model is named {model!r}; embedding models: {embedders or 'none configured'}"
            )
        request = inference_pb2.EmbedRequest(model=model, inputs=inputs)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._pools[config.pool].embed(
                    request, timeout_s=self._settings.generation_timeout_s
                )
            except RemoteError as remote:
                error = self._error_of(remote, model, config.pool, self._settings.generation_timeout_s)
                if outcome_of(error) is not Outcome.RETRY or attempt >= self._settings.retry_attempts:
                    raise error from remote
                await asyncio.sleep(self._backoff(attempt))

    async def describe(self) -> orchestrator_pb2.DescribeRoutingResponse:
        """Every model with its pool's view of it (loaded or not), and every route."""
        pools = sorted({model.pool for model in self.registry.models.values()})
        answers = await asyncio.gather(*(self._list_models(pool) for pool in pools))
        reported = {info.name: info for answer in answers for info in answer or ()}
        reachable = {pool for pool, answer in zip(pools, answers, strict=True) if answer is not None}
        models = []
        for name, config in self.registry.models.items():
            info = reported.get(name)
            models.append(
                common_pb2.ModelInfo(
                    name=name,
                    backend=config.backend,
                    loaded=bool(info and info.loaded),
                    context_length=info.context_length if info else config.context_length,
                    capabilities=config.capabilities,
                    pool=config.pool,
                    pool_reachable=config.pool in reachable,
                    load=info.load if info and info.HasField("load") else None,
                )
            )
        routes = [
            orchestrator_pb2.RouteInfo(
                name=route.name,
                tiers=[
                    orchestrator_pb2.RouteTier(canned=t.canned)
                    if t.canned
                    else orchestrator_pb2.RouteTier(model=t.model)
                    for t in route.tiers
                ],
            )
            for route in self.routes.values()
        ]
        return orchestrator_pb2.DescribeRoutingResponse(
            models=models, routes=routes, default_route=self.registry.default_route
        )

    async def check_pools(self) -> None:
        """Compare what each pool hosts with what the registry says it hosts. A pool that answers
        without a model the registry puts in it means the two read different registries: a ConfigError
        now, not a model_not_found on some later request. A pool that does not answer yet is only
        warned about: pools may start after the orchestrator, and routes fall back meanwhile."""
        pools = sorted(self._pools)
        answers = await asyncio.gather(*(self._list_models(pool) for pool in pools))
        for pool, answer in zip(pools, answers, strict=True):
            expected = set(self.registry.models_in_pool(pool))
            if answer is None:
                if expected:
                    log.warning(
                        "pool unreachable at start; its models fail over until it answers",
                        extra={"pool": pool, "models": sorted(expected)},
                    )
                continue
            missing = expected - {info.name for info in answer}
            if missing:
                raise ConfigError(
                    f"inference pool {pool!r} does not serve {', '.join(sorted(missing))}, which the "
                    "orchestrator's registry puts in it: both must read the same registry (LLM_MESH_REGISTRY)"
                )

    async def _list_models(self, pool: str) -> list[common_pb2.ModelInfo] | None:
        try:
            response = await self._pools[pool].list_models(inference_pb2.ListModelsRequest(), timeout_s=2)
        except MeshError as error:
            log.warning("pool did not answer", extra={"pool": pool, "code": error.code})
            return None
        return list(response.models)

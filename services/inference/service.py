"""The inference domain: what a valid generation request is, and which model of the pool runs it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing
from typing import Any

from llmmesh.common.v1 import common_pb2

from services.common.errors import InvalidGenerationRequest, UpstreamError
from services.common.schemas import MAX_SCHEMA_CHARS, schema_problem
from services.inference.backends.base import (
    Embeddings,
    Event,
    Finished,
    GenerationInput,
    Message,
    OutputConstraint,
    Sampling,
    Tooling,
)
from services.inference.coalescing import coalesced
from services.inference.config import InferenceSettings
from services.inference.errors import InvalidConstraint
from services.inference.models import ModelHost
from services.inference.stats import Ended, RecentGenerations

MAX_EMBED_INPUTS = 256
MAX_TOP_LOGPROBS = 20
# A schema or grammar is a program the engine compiles; bound what one request may hand it.
MAX_CONSTRAINT_CHARS = MAX_SCHEMA_CHARS


def json_schema_constraint(schema_text: str, strict: bool) -> OutputConstraint:
    """A JSON-schema constraint, once the text parses as JSON and is a valid JSON Schema."""
    if len(schema_text) > MAX_CONSTRAINT_CHARS:
        raise InvalidConstraint(f"the JSON schema is over {MAX_CONSTRAINT_CHARS} characters")
    try:
        schema: Any = json.loads(schema_text)
    except ValueError as exc:
        raise InvalidConstraint(f"the JSON schema is not JSON: {exc}") from None
    problem = schema_problem(schema)
    if problem:
        raise InvalidConstraint(problem)
    return OutputConstraint("json_schema", json_schema=schema, strict=strict)


def grammar_constraint(grammar: str) -> OutputConstraint:
    """A GBNF grammar constraint; the engine parses it and names what is wrong."""
    if not grammar.strip():
        raise InvalidConstraint("the grammar is empty")
    if len(grammar) > MAX_CONSTRAINT_CHARS:
        raise InvalidConstraint(f"the grammar is over {MAX_CONSTRAINT_CHARS} characters")
    return OutputConstraint("grammar", grammar=grammar)


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


class InferenceService:
    """Validates requests and runs them on the pool's models."""

    def __init__(self, host: ModelHost, settings: InferenceSettings) -> None:
        self.host = host
        self._settings = settings
        self.recent = RecentGenerations()

    def sampling(
        self,
        max_tokens: int,
        temperature: float | None,
        top_p: float | None,
        seed: int | None,
        stop: Iterable[str],
    ) -> Sampling:
        """Validated sampling parameters; max_tokens defaults here, temperature and top_p in each backend."""
        if max_tokens < 0:
            raise InvalidGenerationRequest("max_tokens must not be negative")
        if temperature is not None and not 0 <= temperature <= 2:
            raise InvalidGenerationRequest("temperature must be between 0 and 2")
        if top_p is not None and not 0 < top_p <= 1:
            raise InvalidGenerationRequest("top_p must be greater than 0 and at most 1")
        stops = tuple(stop)
        if len(stops) > 4 or any(len(s) > 64 for s in stops):
            raise InvalidGenerationRequest("at most 4 stop strings of at most 64 characters")
        return Sampling(
            max_tokens=max_tokens or self._settings.default_max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stops,
        )

    @staticmethod
    def generation_input(
        sampling: Sampling,
        prompt: str | None,
        messages: list[Message],
        one_shot: bool = False,
        tooling: Tooling | None = None,
        constraint: OutputConstraint | None = None,
        logprobs: bool = False,
        top_logprobs: int = 0,
    ) -> GenerationInput:
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidGenerationRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
        if top_logprobs and not logprobs:
            raise InvalidGenerationRequest("top_logprobs needs logprobs")
        controls: dict[str, Any] = {
            "one_shot": one_shot,
            "constraint": constraint,
            "logprobs": logprobs,
            "top_logprobs": top_logprobs,
        }
        if prompt is not None:
            if not prompt:
                raise InvalidGenerationRequest("prompt must not be empty")
            if tooling is not None:
                raise InvalidGenerationRequest("a raw prompt cannot call tools: send messages")
            return GenerationInput(sampling=sampling, prompt=prompt, **controls)
        if not messages:
            raise InvalidGenerationRequest("give a prompt or at least one message")
        if messages[-1].role == "assistant":
            raise InvalidGenerationRequest("the last message must not be the assistant's")
        for message in messages:
            for call in message.tool_calls:
                if not _json_object(call.arguments or "{}"):
                    raise InvalidGenerationRequest(
                        f"the arguments of tool call {call.id!r} are not a JSON object"
                    )
        if tooling is not None:
            for tool in tooling.tools:
                if tool.parameters and not _json_object(tool.parameters):
                    raise InvalidGenerationRequest(
                        f"the parameters of tool {tool.name!r} are not a JSON Schema object"
                    )
            names = [tool.name for tool in tooling.tools]
            if len(set(names)) != len(names):
                raise InvalidGenerationRequest("every tool needs a name of its own")
            if tooling.choice == "function" and tooling.function not in names:
                raise InvalidGenerationRequest(
                    f"tool_choice names {tooling.function!r}, which is not a tool given"
                )
            if tooling.choice in ("required", "function") and not names:
                raise InvalidGenerationRequest("tool_choice requires a tool call but no tools are given")
        return GenerationInput(sampling=sampling, messages=tuple(messages), tooling=tooling, **controls)

    async def generate(self, model: str, request: GenerationInput) -> AsyncGenerator[Event, None]:
        """The model's deltas and result; each generation that ends is recorded in `recent`, timed from
        the request (waiting for a turn on the model counts: it is what the caller waits)."""
        started = time.monotonic()
        first: float | None = None
        reached = False
        try:
            async with self.host.use(model, "generate") as backend:
                # Refused before it reached the model: not one of its generations.
                backend.check_tools(request)
                backend.check_output_controls(request)
                reached = True
                events = backend.generate(request)
                if backend.stream_interval_s:
                    events = coalesced(events, backend.stream_interval_s)
                async with aclosing(events):
                    async for event in events:
                        now = time.monotonic()
                        first = now if first is None else first
                        if isinstance(event, Finished):
                            ended = Ended(now, True, first - started, now - started, event.completion_tokens)
                            self.recent.record(model, ended)
                        yield event
        except Exception:
            # A request refused before it reached the model (unknown model, wrong task) is none of the
            # model's generations; the caller leaving (GeneratorExit, cancellation) is no failure.
            if reached:
                now = time.monotonic()
                self.recent.record(model, Ended(now, False, 0.0, now - started, 0))
            raise

    def load(self, model: str) -> common_pb2.ModelLoad:
        """What the model is doing now and did in the last few minutes."""
        running, waiting = self.host.requests(model)
        return self.recent.load(model, running, waiting)

    async def count_tokens(self, model: str, request: GenerationInput) -> int:
        async with self.host.use(model, "generate") as backend:
            return await backend.count_tokens(request)

    async def embed(self, model: str, inputs: list[str]) -> Embeddings:
        if not inputs:
            raise InvalidGenerationRequest("give at least one input to embed")
        if len(inputs) > MAX_EMBED_INPUTS or any(not text for text in inputs):
            raise InvalidGenerationRequest(f"give 1 to {MAX_EMBED_INPUTS} inputs, none of them empty")
        async with self.host.use(model, "embed") as backend:
            embeddings = await backend.embed(inputs)
        if len(embeddings.vectors) != len(inputs):
            raise UpstreamError(
                f"model {model} returned {len(embeddings.vectors)} embeddings for {len(inputs)} inputs"
            )
        return embeddings

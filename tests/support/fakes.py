"""A recording, scripted inference backend for behaviour tests of the services around the model.

It is loaded the way any custom backend is (`backend: tests.support.fakes:ScriptedBackend` in the registry), so
the inference service, its servicer and the wire are all real; only the model is replaced. Every
end-to-end path is also covered against the real Gemma model in tests/e2e/test_mesh.py.

What it answers depends on the last user message:
  "stall"        -> never produces a token (deadlines)
  "fail midway"  -> two deltas, then an INTERNAL-class failure
  "slow <n>"     -> n deltas, 50 ms apart (cancellation)
  containing "EMPTY-ONCE" -> an empty reply the first time, an echo after
  containing "EMPTY"      -> always an empty reply
  containing "PROVIDER-DOWN" -> fails before any output (a crash: INTERNAL)
  containing "BUSY"          -> refused as busy before any output (RESOURCE_EXHAUSTED)
  containing "DOWN-ONCE"     -> UNAVAILABLE the first time, an echo after
  anything else  -> "echo: <message>", one delta per word
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from services.common.errors import MeshError
from services.common.registry import CustomConfig, ModelConfig
from services.common.request_id import current_request_id
from services.inference.backends.base import (
    Backend,
    Delta,
    Embeddings,
    Event,
    Finished,
    GenerationInput,
    ToolCall,
    ToolCallDelta,
)
from services.inference.errors import ModelBusy, ProviderUnavailable


@dataclass
class Call:
    request_id: str
    request: GenerationInput
    cancelled: bool = False


class ScriptedBackend(Backend):
    kind = "scripted"

    def __init__(
        self,
        name: str = "scripted",
        config: ModelConfig | None = None,
        settings: object = None,
        load_gate: asyncio.Event | None = None,
    ) -> None:
        super().__init__(name, config or CustomConfig(backend="tests.support.fakes:ScriptedBackend"))
        self.calls: list[Call] = []
        self._load_gate = load_gate
        # When set, every generation fails with it before any output (a tier that is down or refuses).
        self.refuse: MeshError | None = None
        self.loads = self.unloads = 0

    def _seen(self, text: str) -> int:
        """Calls so far (this one included) with this last message."""
        return sum(1 for c in self.calls if c.request.messages and c.request.messages[-1].content == text)

    def _answered_empty(self, text: str) -> bool:
        """Whether an earlier call with this text already got its empty reply."""
        return self._seen(text) > 1

    async def load(self) -> None:
        if self._load_gate is not None:
            await self._load_gate.wait()
        self.loads += 1
        self.loaded = True

    async def unload(self) -> None:
        self.unloads += 1
        self.loaded = False

    async def count_tokens(self, request: GenerationInput) -> int:
        return sum(len(m.content.split()) for m in request.as_messages())

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        call = Call(current_request_id(), request)
        self.calls.append(call)
        text = request.prompt if request.prompt is not None else request.messages[-1].content
        # A word is a token here, so prompt limits can be tested without a tokenizer.
        self.check_prompt_tokens(await self.count_tokens(request))
        try:
            if self.refuse is not None:
                raise self.refuse
            if text == "stall":
                await asyncio.Event().wait()
            if "EMPTY" in text and ("EMPTY-ONCE" not in text or not self._answered_empty(text)):
                yield Finished("", 3, 0, "stop")
                return
            if "PROVIDER-DOWN" in text:
                raise RuntimeError("provider down")
            if "BUSY" in text:
                raise ModelBusy(f"model {self.name} is busy")
            if "DOWN-ONCE" in text and self._seen(text) == 1:
                raise ProviderUnavailable(f"model {self.name} is briefly unavailable")
            if text == "fail midway":
                yield Delta("partial ", 1)
                yield Delta("output ", 1)
                raise RuntimeError("backend crashed")
            if text.startswith("slow "):
                pieces = [f"t{index} " for index in range(int(text.split()[1]))]
                for piece in pieces:
                    await asyncio.sleep(0.05)
                    yield Delta(piece, 1)
                yield Finished("".join(pieces), 2, len(pieces), "length")
                return
            words = f"echo: {text}".split(" ")
            pieces = [word + " " for word in words[:-1]] + [words[-1]]
            for piece in pieces:
                yield Delta(piece, 1)
            yield Finished("".join(pieces), len(text.split()), len(pieces), "stop")
        except (asyncio.CancelledError, GeneratorExit):
            call.cancelled = True
            raise


class JsonScriptedBackend(ScriptedBackend):
    """The scripted backend as a model that takes an output constraint, and does not always keep it.

    Constrained, it answers `{"echo": "<message>"}` (one delta per 8 characters); a message containing
    "BAD-JSON-ONCE" gets text that is not JSON the first time, one containing "BAD-JSON" always.
    Unconstrained, it echoes as ScriptedBackend does."""

    constrains_output = True

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        if request.constraint is None:
            async for event in super().generate(request):
                yield event
            return
        self.calls.append(Call(current_request_id(), request))
        text = request.messages[-1].content if request.messages else request.prompt or ""
        bad = "BAD-JSON" in text and ("BAD-JSON-ONCE" not in text or self._seen(text) == 1)
        reply = "not json, sorry" if bad else json.dumps({"echo": text})
        for at in range(0, len(reply), 8):
            yield Delta(reply[at : at + 8], 1)
        yield Finished(reply, len(text.split()), (len(reply) + 7) // 8, "stop")


class ToolScriptedBackend(JsonScriptedBackend):
    """The JSON-keeping scripted model that also calls tools.

    Offered tools (and not told "none"), it answers a user turn by calling the first tool (or the
    one a "function" choice names) with the message as the value of the tool's first required
    argument (`input` when it has none), in three pieces; after a tool turn it answers
    "echo: tool said <the tool's output>"."""

    calls_tools = True

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        tooling = request.tooling
        last = request.messages[-1] if request.messages else None
        if last is not None and last.role == "tool":
            self.calls.append(Call(current_request_id(), request))
            reply = f"echo: tool said {last.content}"
            yield Delta(reply, 1)
            yield Finished(reply, len(last.content.split()), 1, "stop")
            return
        if tooling is None or tooling.choice == "none" or last is None:
            async for event in super().generate(request):
                yield event
            return
        self.calls.append(Call(current_request_id(), request))
        tool = next((t for t in tooling.tools if t.name == tooling.function), tooling.tools[0])
        argument = (tool.schema().get("required") or ["input"])[0]
        arguments = json.dumps({argument: last.content})
        call = ToolCall(f"call_{len(self.calls)}", tool.name, arguments)
        middle = len(arguments) // 2
        yield ToolCallDelta(0, call.id, call.name)
        yield ToolCallDelta(0, arguments=arguments[:middle])
        yield ToolCallDelta(0, arguments=arguments[middle:])
        yield Finished("", len(last.content.split()), 3, "tool_calls", tool_calls=(call,))


class LocalScriptedBackend(ScriptedBackend):
    """The scripted backend as a local engine: the host may unload it when idle or to make room."""

    unloadable = True


class ScriptedEmbedder(ScriptedBackend):
    """An embedding model: a deterministic unit-length vector per text, a token per word."""

    async def embed(self, inputs: list[str]) -> Embeddings:
        vectors = []
        for text in inputs:
            raw = [float(ord(c) % 7 + 1) for c in (text * 4)[:4]]
            norm = sum(v * v for v in raw) ** 0.5
            vectors.append([v / norm for v in raw])
        return Embeddings(vectors, sum(len(t.split()) for t in inputs))


class SlowEmbedder(ScriptedEmbedder):
    """The scripted embedder taking 0.25 s per call: an ingestion lasts long enough to be killed."""

    async def embed(self, inputs: list[str]) -> Embeddings:
        await asyncio.sleep(0.25)
        return await super().embed(inputs)

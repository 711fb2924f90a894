"""llama.cpp's own server engine, in-process through the xllamacpp wheel: one GGUF model with N slots.

The engine decodes every live sequence in one batch per step (continuous batching: a request that
arrives joins at the next step, a finished or cancelled one frees its slot at once), keeps each slot's
KV cache so a prompt that starts like one already there is not evaluated again (the slot is picked by
longest common prefix), and enforces JSON schemas and GBNF grammars while sampling. It is prebuilt:
no compiler, and its CPU backend is chosen at run time from what the CPU enables.

The engine also listens on a loopback HTTP port of its own (llama.cpp's server routes); we use it
only to tokenize, which its HTTP threads answer beside running slots.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from services.common.config import ConfigError
from services.common.errors import UpstreamError
from services.common.registry import LlamaCppConfig
from services.inference import local_tools
from services.inference.backends.base import (
    Backend,
    Delta,
    Embeddings,
    Event,
    Finished,
    FinishReason,
    GenerationInput,
    OutputConstraint,
    TokenLogprob,
    TopLogprob,
)
from services.inference.backends.llama_cpp import packaged_model_path
from services.inference.config import InferenceSettings
from services.inference.errors import (
    InvalidConstraint,
    ModelBusy,
    ModelNotLoaded,
    UnsupportedOutputControl,
)
from services.inference.gguf import metadata_string
from services.inference.metrics import PROMPT_TOKENS, PROMPT_TOKENS_CACHED
from services.inference.stop import StopMatcher
from services.inference.templates import GEMMA_START_OF_TURN, Piece, render_gemma

if TYPE_CHECKING:
    import xllamacpp

log = logging.getLogger("llmmesh.inference.xllamacpp")

# llama.cpp's value for "pick a fresh random seed".
_RANDOM_SEED = 0xFFFFFFFF
# Sampling llama-cpp-python's Llama applies by default, so both engines sample alike.
_TOP_K = 40
_MIN_P = 0.05
_REPEAT_LAST_N = 64
# Loopback calls to the engine's own HTTP routes (tokenize, slots) answer in milliseconds.
_HTTP_TIMEOUT_S = 10.0
# Tokenized message pieces remembered (least recently used dropped first), each at most this long.
_CACHED_PIECES = 4096
_CACHED_PIECE_CHARS = 16_384


class XllamacppBackend(Backend):
    """Serves one GGUF model on llama.cpp's server engine.

    Each request runs on a thread of its own that blocks in the engine and hands chunks to the event
    loop; returning True from the engine's callback cancels the sequence, which the engine does
    before its next decode step. Admission is ours: at most `slots` requests run and
    `max_waiting` wait, in arrival order (the engine defers tasks first in, first out); more are
    refused with model_busy.
    """

    kind = "llama_cpp"
    unloadable = True
    constrains_output = True
    reports_logprobs = True
    # Through the mesh's fallback format (services/inference/local_tools.py), forced while decoding.
    calls_tools = True

    def __init__(self, name: str, config: LlamaCppConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)
        self.config: LlamaCppConfig = config
        self._settings = settings
        self.stream_interval_s = settings.stream_interval_ms / 1e3
        self._threads = config.threads or settings.threads
        self.slots = 1 if config.deterministic else config.slots
        self._server: xllamacpp.Server | None = None
        self._address = ""
        self._http: httpx.AsyncClient | None = None
        # One thread per admitted request (running or waiting); the engine's own loop has its own.
        self._executor = ThreadPoolExecutor(
            max_workers=self.slots + settings.max_waiting + 1, thread_name_prefix=f"xllamacpp-{name}"
        )
        self._admitted = 0
        # Set while no request is admitted: unloading waits for it.
        self._idle = asyncio.Event()
        self._idle.set()
        self._special_tokens: dict[str, list[int]] = {}
        self._piece_tokens: OrderedDict[str, list[int]] = OrderedDict()
        self._use_gguf_template = False
        self.tokens_generated = 0
        self.cached_tokens_total = 0

    def describe(self) -> str:
        return "llama_cpp, xllamacpp engine"

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.run_in_executor(self._executor, self._load_blocking)
        self._server, self._address = server, server.listening_address
        # One connection: the engine's HTTP server gives each kept-alive connection a thread of its
        # few until it closes, so parallel connections starve each other (seen: 10 s read timeouts).
        self._http = httpx.AsyncClient(
            base_url=self._address, timeout=_HTTP_TIMEOUT_S, limits=httpx.Limits(max_connections=1)
        )
        self.loaded = True

    def _load_blocking(self) -> xllamacpp.Server:
        import xllamacpp

        path = self.config.path or packaged_model_path()
        if not path.is_file():
            raise ConfigError(f"model {self.name}: no GGUF file at {path}")
        started = time.perf_counter()
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self.slots
        # One KV cache shared by the slots, each able to fill the whole context window.
        params.kv_unified = True
        params.n_ctx = self.context_length * self.slots
        # A full-size cache for sliding-window layers (Gemma 3's): without it the engine can cut a
        # slot's cache back only to a checkpoint, and a prompt that shares a prefix with it but not
        # its whole prompt is evaluated from the start.
        params.swa_full = True
        params.cpuparams.n_threads = self._threads
        params.cpuparams_batch.n_threads = self._threads
        # Its HTTP routes listen on loopback only, on a port the kernel picks.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.endpoint_slots = True
        # Threads for those routes: tokenizing requests, and scrapes of /slots beside them.
        params.n_threads_http = 4
        params.verbosity = -1
        if self.config.task != "embed":
            self._use_gguf_template = self._gguf_template_applies(path)
        else:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        server = xllamacpp.Server(params)
        log.info(
            "model %s loaded in %.2f s (xllamacpp, %d slots)",
            self.name,
            time.perf_counter() - started,
            self.slots,
            extra={"model": self.name, "path": str(path)},
        )
        return server

    def _gguf_template_applies(self, path: Path) -> bool:
        """Whether prompts are rendered by the GGUF file's own chat template (not Gemma's turns).

        Read from the file: the engine reports a ChatML fallback for a file that stores none."""
        template = metadata_string(path, "tokenizer.chat_template")
        choice = self.config.chat_template
        if choice == "gemma" or (choice == "auto" and (not template or GEMMA_START_OF_TURN in template)):
            return False
        if not template:
            raise ConfigError(f"model {self.name}: chat_template is gguf but {path} stores no chat template")
        return True

    def requests_waiting(self) -> int:
        return max(0, self._admitted - self.slots)

    def engine_gauges(self) -> dict[str, float]:
        """Slot and KV-cache occupancy read from the engine (called at scrape time)."""
        if self._server is None or not self._address:
            return {}
        try:
            slots = httpx.get(f"{self._address}/slots", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return {}
        busy = [s for s in slots if s.get("is_processing")]
        used = sum(
            int(s.get("n_prompt_tokens", 0)) + int((s.get("next_token") or [{}])[0].get("n_decoded", 0))
            for s in busy
        )
        capacity = sum(int(s.get("n_ctx", 0)) for s in slots[:1]) or 1
        return {"slots": len(slots), "slots_busy": len(busy), "kv_cache_usage": min(1.0, used / capacity)}

    # --- tokenizing -------------------------------------------------------------------------------

    async def _tokens_of(self, text: str, special: bool) -> list[int]:
        assert self._http is not None
        if special and text in self._special_tokens:
            return self._special_tokens[text]
        # A conversation sends its earlier turns again with every turn: their tokens are remembered.
        cached = self._piece_tokens.get(text)
        if cached is not None and not special:
            self._piece_tokens.move_to_end(text)
            return cached
        response = await self._http.post(
            "/tokenize", json={"content": text, "add_special": False, "parse_special": special}
        )
        tokens = [int(t) for t in response.json()["tokens"]]
        if special:
            self._special_tokens[text] = tokens
        elif len(text) <= _CACHED_PIECE_CHARS:
            self._piece_tokens[text] = tokens
            if len(self._piece_tokens) > _CACHED_PIECES:
                self._piece_tokens.popitem(last=False)
        return tokens

    async def _tokenize(self, request: GenerationInput) -> list[int]:
        if self._http is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        # Tools, calls and their results as turns a template without a tool format renders.
        messages = local_tools.plain_messages(request.messages, request.tooling)
        if request.prompt is None and self._use_gguf_template:
            rendered = await self._http.post(
                "/apply-template",
                json={"messages": [{"role": m.role, "content": m.content} for m in messages]},
            )
            # The file's own template renders the whole prompt, BOS and control tokens included.
            return await self._tokens_of(rendered.json()["prompt"], special=True)
        pieces: list[Piece] = (
            [(request.prompt, False)] if request.prompt is not None else render_gemma(messages)
        )
        # Content is never parsed for control tokens: a user cannot forge a turn.
        tokens = list(await self._bos())
        for text, special in pieces:
            tokens += await self._tokens_of(text, special)
        return tokens

    async def _bos(self) -> list[int]:
        if "<bos>" not in self._special_tokens:
            assert self._http is not None
            response = await self._http.post(
                "/tokenize", json={"content": "", "add_special": True, "parse_special": True}
            )
            self._special_tokens["<bos>"] = [int(t) for t in response.json()["tokens"]]
        return self._special_tokens["<bos>"]

    async def count_tokens(self, request: GenerationInput) -> int:
        return len(await self._tokenize(request))

    # --- generating -------------------------------------------------------------------------------

    def _admit(self) -> None:
        if self._server is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        if self._admitted >= self.slots + self._settings.max_waiting:
            raise ModelBusy(f"model {self.name} has {self.requests_waiting()} requests waiting; retry later")
        self._admitted += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._admitted -= 1
        if not self._admitted:
            self._idle.set()

    def _body(
        self, request: GenerationInput, prompt: list[int], limit: int, constraint: OutputConstraint | None
    ) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": limit,
            "stream": True,
            "temperature": self._settings.default_temperature
            if sampling.temperature is None
            else sampling.temperature,
            "top_p": self._settings.default_top_p if sampling.top_p is None else sampling.top_p,
            "top_k": _TOP_K,
            "min_p": _MIN_P,
            "repeat_penalty": self._settings.repeat_penalty,
            "repeat_last_n": _REPEAT_LAST_N,
            "seed": sampling.seed if sampling.seed is not None else _RANDOM_SEED,
            # Deterministic: every prompt evaluated from an empty cache, on the engine's chunk grid.
            "cache_prompt": not self.config.deterministic,
        }
        if request.logprobs:
            # The engine reports the sampled token's logprob among n_probs alternatives (at least 1).
            body["n_probs"] = max(1, request.top_logprobs)
        if constraint is not None:
            body.update(_constraint_fields(constraint))
        return body

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        self._admit()
        try:
            async for event in self._generate(request):
                yield event
        finally:
            self._leave()

    async def _generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        tooling = local_tools.active(request.tooling)
        constraint = request.constraint
        if tooling is not None and constraint is None:
            constraint = local_tools.constraint(tooling)
        elif tooling is not None and tooling.choice != "none":
            raise UnsupportedOutputControl(
                f"model {self.name} ({self.describe()}) cannot constrain its output while it may call "
                "tools: send tools or an output format, not both"
            )
        prompt = await self._tokenize(request)
        self.check_prompt_tokens(len(prompt))
        limit = min(request.sampling.max_tokens, self.context_length - len(prompt))
        body = self._body(request, prompt, limit, constraint)
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def deliver(item: dict[str, Any] | BaseException | None) -> None:
            loop.call_soon_threadsafe(chunks.put_nowait, item)

        def on_chunk(chunk: dict[str, Any]) -> bool:
            deliver(chunk)
            return cancelled.is_set()

        worker = loop.run_in_executor(self._executor, self._complete_blocking, body, on_chunk, deliver)
        stops = StopMatcher(request.sampling.stop)
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        pending: list[TokenLogprob] = []
        completion_tokens = pending_tokens = cached_tokens = 0
        finish_reason: FinishReason = "length"
        # A reply that calls tools: always under "required" or a named tool; under "auto", one that
        # opens like JSON (plain text may not: see local_tools.constraint).
        calls: local_tools.CallScanner | None = None
        if tooling is not None and tooling.choice in ("required", "function"):
            calls = local_tools.CallScanner(tooling.parallel_calls)
        undecided = tooling is not None and tooling.choice == "auto"
        try:
            while True:
                chunk = await chunks.get()
                if chunk is None:  # the engine returned without a final chunk
                    break
                if isinstance(chunk, BaseException):
                    raise chunk
                if "error" in chunk:
                    raise _engine_error(chunk["error"], constraint)
                choice = (chunk.get("choices") or [{}])[0]
                ended = choice.get("finish_reason")
                if ended is None:
                    completion_tokens += 1
                    pending_tokens += 1
                    self.tokens_generated += 1
                token_logprobs = _token_logprobs(choice.get("logprobs"), request.top_logprobs)
                logprobs.extend(token_logprobs)
                pending.extend(token_logprobs)
                text = choice.get("text") or ""
                if undecided and text:
                    undecided = False
                    if text[0] in "{[":
                        assert tooling is not None
                        calls = local_tools.CallScanner(tooling.parallel_calls)
                if calls is not None:
                    for piece in calls.push(text):
                        yield piece
                    text = ""
                safe, stopped = stops.push(text)
                if safe:
                    parts.append(safe)
                    yield Delta(safe, pending_tokens, tuple(pending))
                    pending_tokens, pending = 0, []
                if stopped:
                    finish_reason = "stop"
                    break
                if ended is not None:
                    finish_reason = "length" if ended == "length" else "stop"
                    usage = chunk.get("usage") or {}
                    cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
                    completion_tokens = int(usage.get("completion_tokens", completion_tokens))
                    break
            tail = "" if stops.hit else stops.flush()
            if tail or (pending and calls is None):
                parts.append(tail)
                yield Delta(tail, pending_tokens, tuple(pending))
            self.cached_tokens_total += cached_tokens
            PROMPT_TOKENS.labels(self.name).inc(len(prompt))
            PROMPT_TOKENS_CACHED.labels(self.name).inc(cached_tokens)
            tool_calls = calls.calls() if calls is not None else ()
            if tool_calls and finish_reason != "length":
                finish_reason = "tool_calls"
            yield Finished(
                "".join(parts),
                len(prompt),
                completion_tokens,
                finish_reason,
                stops.hit,
                cached_tokens=cached_tokens,
                logprobs=tuple(logprobs),
                tool_calls=tool_calls,
            )
        finally:
            # The client left or the generation ended: the engine drops the sequence when its
            # callback next returns, and the request counts as in use until its thread is out.
            cancelled.set()
            await asyncio.shield(worker)

    def _complete_blocking(
        self,
        body: dict[str, Any],
        on_chunk: Callable[[dict[str, Any]], bool],
        deliver: Callable[[dict[str, Any] | BaseException | None], None],
    ) -> None:
        try:
            server = self._server
            if server is None:
                raise ModelNotLoaded(f"model {self.name} is not loaded")
            server.handle_completions(body, on_chunk)
            deliver(None)
        except BaseException as exc:  # handed to the event loop, which raises it in the RPC
            deliver(exc)

    async def embed(self, inputs: list[str]) -> Embeddings:
        if self.config.task != "embed":
            return await super().embed(inputs)
        if self._server is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        self._admit()
        try:
            server = self._server
            answer = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: server.handle_embeddings({"input": inputs})
            )
        finally:
            self._leave()
        if "error" in answer or "data" not in answer:
            raise UpstreamError(f"model {self.name} could not embed: {answer.get('error', answer)}")
        vectors = [_unit(item["embedding"]) for item in sorted(answer["data"], key=lambda d: d["index"])]
        return Embeddings(vectors=vectors, prompt_tokens=int(answer.get("usage", {}).get("prompt_tokens", 0)))

    async def unload(self) -> None:
        """Free the weights once the requests already admitted are done."""
        server, self._server = self._server, None
        self.loaded = False
        if server is None:
            return
        await self._idle.wait()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        # Dropping the last reference stops the engine's loop and frees the model; that joins the
        # engine's thread, so it happens on a worker thread, not the event loop's.
        holder = [server]
        del server
        await asyncio.get_running_loop().run_in_executor(self._executor, holder.clear)
        log.info("model %s unloaded", self.name, extra={"model": self.name})

    async def close(self) -> None:
        await self.unload()
        self._executor.shutdown(wait=True)


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [float(x) / norm for x in vector]


# JSON without free whitespace between its tokens (llguidance's option, which this engine compiles JSON
# schemas with): where whitespace may run on, a small model under the grammar can spend its whole token
# budget on newlines and never reach a key (seen with Gemma 3 270M and a nested schema).
_COMPACT_JSON = {"x-guidance": {"whitespace_flexible": False}}


def _constraint_fields(constraint: OutputConstraint) -> dict[str, Any]:
    if constraint.kind == "grammar":
        return {"grammar": constraint.grammar}
    if constraint.kind == "json_object":
        return {"json_schema": {"type": "object", **_COMPACT_JSON}}
    return {"json_schema": {**_COMPACT_JSON, **(constraint.json_schema or {})}}


def _engine_error(error: Any, constraint: OutputConstraint | None) -> Exception:
    """The engine's error chunk as a mesh error: a 400 about the constraint, else an engine failure."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = str(error.get("message", "the engine failed"))
    if int(error.get("code", 500)) == 400:
        if constraint is not None and constraint.kind == "grammar":
            return InvalidConstraint(f"the grammar is invalid: {message}")
        if constraint is not None:
            return InvalidConstraint(f"the JSON schema cannot be enforced: {message}")
        return InvalidConstraint(message)
    log.error("xllamacpp engine error: %s", message)
    return UpstreamError("the local engine failed to generate")


def _token_logprobs(logprobs: Any, top: int) -> tuple[TokenLogprob, ...]:
    if not logprobs:
        return ()
    return tuple(
        TokenLogprob(
            token=item.get("token", ""),
            logprob=float(item.get("logprob", 0.0)),
            token_bytes=bytes(item.get("bytes") or b""),
            top=tuple(
                TopLogprob(t.get("token", ""), float(t.get("logprob", 0.0)), bytes(t.get("bytes") or b""))
                for t in (item.get("top_logprobs") or [])[:top]
            ),
        )
        for item in logprobs.get("content") or []
    )

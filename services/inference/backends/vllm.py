"""vLLM backend (GPU): an in-process AsyncLLMEngine, streaming tokens as they are decoded, with
continuous batching of every concurrent request by vLLM's own scheduler.

vLLM is an optional extra (`pip install 'llm-mesh[vllm]'`, CUDA only) and is imported when a model
of the registry uses it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams

from services.common.registry import VllmConfig
from services.inference.backends.base import Backend, Delta, Finished, GenerationInput
from services.inference.config import InferenceSettings
from services.inference.errors import ModelNotLoaded

log = logging.getLogger("llmmesh.inference.vllm")


class VllmBackend(Backend):
    kind = "vllm"
    unloadable = True

    def __init__(self, name: str, config: VllmConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)
        self.config: VllmConfig = config
        self._settings = settings
        self._engine: Any = None
        self._tokenizer: Any = None

    async def load(self) -> None:
        started = time.perf_counter()
        args = AsyncEngineArgs(
            model=self.config.model_id,
            dtype=self.config.dtype,
            gpu_memory_utilization=self.config.gpu_memory_utilization,
            tensor_parallel_size=self.config.tensor_parallel_size,
            max_model_len=self.config.context_length or None,
        )
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._tokenizer = await self._engine.get_tokenizer()
        self.loaded = True
        log.info(
            "model %s loaded in %.2f s", self.name, time.perf_counter() - started, extra={"model": self.name}
        )

    def _prompt(self, request: GenerationInput) -> str:
        if request.prompt is not None:
            return request.prompt
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        rendered: str = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return rendered

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Delta | Finished, None]:
        if self._engine is None:
            raise ModelNotLoaded(f"model {self.name} is not loaded")
        sampling = request.sampling
        params = SamplingParams(
            max_tokens=sampling.max_tokens,
            temperature=self._settings.default_temperature
            if sampling.temperature is None
            else sampling.temperature,
            top_p=self._settings.default_top_p if sampling.top_p is None else sampling.top_p,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
            repetition_penalty=self._settings.repeat_penalty,
        )
        prompt = self._prompt(request)
        if self.prompt_token_limit:
            self.check_prompt_tokens(len(self._tokenizer.encode(prompt, add_special_tokens=False)))
        request_id = uuid.uuid4().hex
        sent_text = ""
        sent_tokens = 0
        finished = False
        output: Any = None
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                completion = output.outputs[0]
                if len(completion.text) > len(sent_text):
                    yield Delta(completion.text[len(sent_text) :], len(completion.token_ids) - sent_tokens)
                    sent_text, sent_tokens = completion.text, len(completion.token_ids)
            finished = True
        finally:
            if not finished:  # the client left: free the sequence's slot in the batch
                await self._engine.abort(request_id)
        completion = output.outputs[0] if output is not None else None
        yield Finished(
            sent_text,
            len(output.prompt_token_ids or ()) if output is not None else 0,
            len(completion.token_ids) if completion is not None else 0,
            "length" if completion is not None and completion.finish_reason == "length" else "stop",
        )

    async def unload(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            shutdown = getattr(engine, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self.loaded = False

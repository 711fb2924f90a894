"""The models of one inference pool: loaded at start or on first use, kept warm, unloaded when idle.

Local engines (llama.cpp, vLLM) hold weights in memory, so at most `max_loaded_models` of them are
loaded at once: loading another unloads the least recently used one that no request is using, and
a model idle for `idle_unload_s` is unloaded. Cloud backends hold only a client and stay loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from services.common.errors import InvalidGenerationRequest, MeshError, ModelNotFound, UnsupportedTask, shown
from services.inference.backends.base import Backend
from services.inference.errors import (
    ModelLoadFailed,
    NoModelSlot,
)
from services.inference.metrics import MODEL_LOAD_SECONDS, POOLS

log = logging.getLogger("llmmesh.inference.models")


class ModelHost:
    def __init__(
        self,
        backends: Iterable[Backend],
        max_loaded: int,
        idle_unload_s: float,
        at_startup: Iterable[str] = (),
    ) -> None:
        self.backends = {backend.name: backend for backend in backends}
        self._max_loaded = max_loaded
        self._idle_unload_s = idle_unload_s
        self._at_startup = [name for name in at_startup if name in self.backends]
        self._in_use = dict.fromkeys(self.backends, 0)
        self._last_used = dict.fromkeys(self.backends, 0.0)
        # One load at a time: two loads racing could both find room for themselves and overshoot.
        self._loading = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        POOLS.track(self)

    async def start(self) -> None:
        """Load the startup models (at most max_loaded local ones) and build every provider client."""
        for backend in self.backends.values():
            if backend.name in self._at_startup or not backend.unloadable:
                await self._load(backend)
        if self._idle_unload_s:
            self._reaper = asyncio.create_task(self._unload_idle())

    def in_use(self, name: str) -> int:
        """Requests holding the model now: running on it, waiting for it, or waiting for it to load."""
        return self._in_use[name]

    def requests(self, name: str) -> tuple[int, int]:
        """(running, waiting): the requests the model works on now and those queued for it."""
        waiting = self.backends[name].requests_waiting()
        return max(0, self._in_use[name] - waiting), waiting

    def backend_for(self, name: str) -> Backend:
        if not name:
            raise InvalidGenerationRequest("model is required")
        backend = self.backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self.backends))
            raise ModelNotFound(f"model {shown(name)} is not served here; known models: {known}")
        return backend

    @asynccontextmanager
    async def use(self, name: str, task: str) -> AsyncIterator[Backend]:
        """The named model, loaded, marked in use (so it is not unloaded) until the block ends."""
        backend = self.backend_for(name)
        if task not in backend.config.capabilities:
            raise UnsupportedTask(
                f"model {name} is {'an embedding' if backend.config.task == 'embed' else 'a generation'} "
                f"model; it cannot {task}"
            )
        self._in_use[name] += 1
        try:
            if not backend.loaded:
                await self._load(backend)
            yield backend
        finally:
            self._in_use[name] -= 1
            self._last_used[name] = time.monotonic()

    async def _load(self, backend: Backend) -> None:
        async with self._loading:
            if backend.loaded:
                return
            if backend.unloadable:
                await self._make_room()
            started = time.perf_counter()
            try:
                await backend.load()
            except MeshError:
                raise
            except Exception as exc:
                log.exception("loading model %s failed", backend.name, extra={"model": backend.name})
                raise ModelLoadFailed(f"model {backend.name} failed to load") from exc
            MODEL_LOAD_SECONDS.labels(backend.name).observe(time.perf_counter() - started)
            self._last_used[backend.name] = time.monotonic()

    async def _make_room(self) -> None:
        loaded = [b for b in self.backends.values() if b.unloadable and b.loaded]
        while len(loaded) >= self._max_loaded:
            idle = [b for b in loaded if not self._in_use[b.name]]
            if not idle:
                raise NoModelSlot(
                    f"all {self._max_loaded} model slots hold models that are generating; retry later "
                    "or raise INFERENCE_MAX_LOADED_MODELS"
                )
            victim = min(idle, key=lambda b: self._last_used[b.name])
            log.info("unloading %s to make room", victim.name, extra={"model": victim.name})
            loaded.remove(victim)
            await self._unload(victim)

    async def _unload_idle(self) -> None:
        interval = max(0.05, min(self._idle_unload_s / 4, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for backend in self.backends.values():
                idle_for = now - self._last_used[backend.name]
                if backend.unloadable and idle_for >= self._idle_unload_s:
                    async with self._loading:
                        if backend.loaded and not self._in_use[backend.name]:
                            log.info("unloading idle model %s", backend.name, extra={"model": backend.name})
                            await self._unload(backend)

    @staticmethod
    async def _unload(backend: Backend) -> None:
        # Marked unloaded before the first await: a request arriving meanwhile sees it must load the
        # model again (and waits for this unload to finish) instead of using weights being freed.
        backend.loaded = False
        await backend.unload()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                log.exception("closing model %s failed", backend.name)

"""The local supervisor behind `llm-mesh up`: the four services as child processes on one machine.

It checks every port before starting anything, starts the services in dependency order and waits for
each to report ready over its own pipe (services.common.readiness), never for whatever answers on the
port. A service that exits is reported and started again after a backoff; one that keeps exiting
(a crash loop) stops the mesh. SIGINT/SIGTERM stop the services callers first. The children die with
the supervisor even when it is killed with SIGKILL (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from services import SERVICES
from services.common.config import ServiceSettings
from services.common.ports import bind_failure
from services.common.readiness import READY_FD_ENV, READY_LINE
from services.gateway.config import GatewaySettings
from services.inference.config import InferenceSettings
from services.orchestrator.config import OrchestratorSettings
from services.store.config import StoreSettings

SETTINGS: dict[str, type[ServiceSettings]] = {
    "store": StoreSettings,
    "inference": InferenceSettings,
    "orchestrator": OrchestratorSettings,
    "gateway": GatewaySettings,
}


def settings_problem(exc: ValidationError) -> str:
    """A service's refused settings, named by their environment variables (see ServiceSettings.problem)."""
    for cls in SETTINGS.values():
        if cls.__name__ == exc.title:
            return cls.problem(exc)
    return str(exc)


# --port-base N: the gateway's HTTP port is N, each gRPC port N + its offset, each metrics port
# N + 10 + its offset (the order of the defaults 8080, 50051-50053 and 9400-9403).
PORT_OFFSETS = {"gateway": 0, "orchestrator": 1, "inference": 2, "store": 3}
METRICS_OFFSET = 10
# Generous: the first start assembles the model file from its package before loading it.
STARTUP_TIMEOUT_S = 300.0
STOP_GRACE_S = 20.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Ports:
    """Where each service of one local mesh listens: its own port (HTTP for the gateway, gRPC for the
    others) and its metrics port (0: off)."""

    serve: Mapping[str, int]
    metrics: Mapping[str, int]

    @classmethod
    def from_base(cls, base: int) -> Ports:
        """Every port at its fixed offset from base (see PORT_OFFSETS)."""
        highest = base + METRICS_OFFSET + max(PORT_OFFSETS.values())
        if base < 1 or highest > 65535:
            raise ValueError(f"--port-base must leave room for ports {base}..{highest} (1..65535)")
        return cls(
            serve={name: base + offset for name, offset in PORT_OFFSETS.items()},
            metrics={name: base + METRICS_OFFSET + offset for name, offset in PORT_OFFSETS.items()},
        )

    @classmethod
    def from_settings(cls, gateway_port: int | None = None) -> Ports:
        """The ports each service's own settings name (environment, `.env`, defaults)."""
        settings = {name: SETTINGS[name]() for name in SERVICES}
        serve = {name: s.port for name, s in settings.items()}
        if gateway_port is not None:
            serve["gateway"] = gateway_port
        return cls(serve=serve, metrics={name: s.metrics_port for name, s in settings.items()})

    def each(self) -> list[tuple[str, str, int, str]]:
        """(service, what, port, setting) for every port in use, gateway first."""
        rows = []
        for name in reversed(SERVICES):
            kind = "HTTP" if name == "gateway" else "gRPC"
            rows.append((name, kind, self.serve[name], SETTINGS[name].env_name("port")))
            if self.metrics[name]:
                rows.append((name, "metrics", self.metrics[name], SETTINGS[name].env_name("metrics_port")))
        return rows

    def taken(self, host: str) -> list[str]:
        """One line per port another process already holds."""
        return [
            f"port {port} on {host} ({name} {what}, {setting}) is taken: {reason}"
            for name, what, port, setting in self.each()
            if (reason := bind_failure(host, port))
        ]

    def environment(self, host: str) -> dict[str, str]:
        """The variables that put every service, and every caller's address of it, on these ports."""
        env = {}
        for name, cls in SETTINGS.items():
            env[cls.env_name("host")] = host
            env[cls.env_name("port")] = str(self.serve[name])
            env[cls.env_name("metrics_port")] = str(self.metrics[name])
            env[f"{name.upper()}_ADDR"] = f"{host}:{self.serve[name]}"
        return env


@dataclass
class RestartPolicy:
    """When a service that exited is started again: after a backoff that doubles with each exit in the
    last `window_s` seconds, or never once it exited more than `max_restarts` times in that window."""

    max_restarts: int = 5
    window_s: float = 60.0
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    _exits: deque[float] = field(default_factory=deque)

    @property
    def recent_exits(self) -> int:
        return len(self._exits)

    def after_exit(self, now: float) -> float | None:
        """Record an exit at `now` (monotonic seconds); the delay before the restart, or None: give up."""
        self._exits.append(now)
        while self._exits[0] <= now - self.window_s:
            self._exits.popleft()
        if len(self._exits) > self.max_restarts:
            return None
        return min(self.first_delay_s * 2 ** (len(self._exits) - 1), self.max_delay_s)


class NotReady(Exception):
    """A service exited, or did not report ready in time, after it was started."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class _Child:
    name: str
    port: int
    policy: RestartPolicy
    process: asyncio.subprocess.Process | None = None
    starts: int = 0


def _say(message: str) -> None:
    print(f"llm-mesh: {message}", file=sys.stderr, flush=True)


def _die_with_supervisor() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send the child SIGTERM when the supervisor dies, however it
    dies. Linux only: elsewhere (or without a usable libc) the children outlive a killed supervisor.
    The signal follows the thread that forked, so children are only ever started from the event
    loop's thread, which lives as long as the process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: a preexec_fn must do little
    except (OSError, AttributeError):
        _say("prctl is unavailable; services will outlive llm-mesh if it is killed")
        return None
    supervisor = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:  # it died between fork and prctl
            os._exit(1)

    return preexec


async def _ready_pipe(fd: int) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    """The read end of a child's readiness pipe, as a stream (the transport owns the fd from here)."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


class Supervisor:
    """Runs one local mesh until a signal, or until a service gives up in a crash loop."""

    def __init__(self, host: str, ports: Ports, max_restarts: int = 5) -> None:
        self.host = host
        self.ports = ports
        self.env = {**os.environ, "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text")}
        self.env.update(ports.environment(host))
        self.children = {
            name: _Child(name, ports.serve[name], RestartPolicy(max_restarts=max_restarts))
            for name in SERVICES
        }
        self._preexec = _die_with_supervisor()

    async def run(self) -> int:
        """The process exit code: 0 after a clean stop on a signal; 2 when a port is taken or a service
        refused its configuration at start (it exited 2); 1 when a service failed otherwise."""
        taken = self.ports.taken(self.host)
        if taken:
            for line in taken:
                _say(line)
            _say("stop what holds them, or move every port of this mesh with --port-base")
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        exit_code = 0
        try:
            if await self._until(self._start_all(), stop):
                self._banner()
                watchers = [self._supervise(child) for child in self.children.values()]
                if await self._until(self._first(watchers), stop):
                    exit_code = 1  # a service gave up
        except NotReady as exc:
            _say(f"failed to start: {exc}")
            exit_code = 2 if exc.exit_code == 2 else 1
        finally:
            # callers first, so no request meets a service already gone
            for name in reversed(SERVICES):
                if not await self._stop(self.children[name]):
                    exit_code = exit_code or 1
            _say("stopped")
        return exit_code

    def _banner(self) -> None:
        gateway = f"http://{self.host}:{self.ports.serve['gateway']}"
        print(
            f"LLM Mesh is up. Gateway: {gateway}  (Ctrl-C to stop)\n"
            f"  console: open {gateway}/ in a browser (chat, sessions, jobs, models)\n"
            f"  try: curl -s -X POST {gateway}/api/v1/ai/generate "
            '-H \'content-type: application/json\' -d \'{"prompt":"Write a haiku about the sea","max_tokens":64}\'',
            flush=True,
        )

    @staticmethod
    async def _until(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
        """Run work until it returns (True) or stop is set first (False; work is cancelled)."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()  # raises what the work raised
        return True

    @staticmethod
    async def _first(work: list[Coroutine[Any, Any, None]]) -> None:
        """Return when the first of work returns (a service gave up); the rest is cancelled."""
        tasks = [asyncio.ensure_future(w) for w in work]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_all(self) -> None:
        """store and inference together, then orchestrator, then gateway: each after what it calls."""
        first = [asyncio.ensure_future(self._start(self.children[name])) for name in ("store", "inference")]
        try:
            await asyncio.gather(*first)
        finally:  # one failed: the other is not waited for
            for task in first:
                task.cancel()
            await asyncio.gather(*first, return_exceptions=True)
        await self._start(self.children["orchestrator"])
        await self._start(self.children["gateway"])

    async def _start(self, child: _Child) -> None:
        """Start the service and return once it reported ready; NotReady when it exits first or takes
        longer than STARTUP_TIMEOUT_S (it is killed then)."""
        read_fd, write_fd = os.pipe()
        try:
            child.process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "services.cli", "serve", child.name),
                env={**self.env, READY_FD_ENV: str(write_fd)},
                pass_fds=(write_fd,),
                start_new_session=True,  # Ctrl-C reaches only us; we stop the services in order
                preexec_fn=self._preexec,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds the only write end: EOF means it is gone
        child.starts += 1
        process = child.process
        reader, pipe = await _ready_pipe(read_fd)
        ready = asyncio.ensure_future(reader.readline())  # b"" when the pipe closes: the child is gone
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, exited}, timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            exited.cancel()
            pipe.close()
        address = f"{self.host}:{child.port}"
        if ready in done and ready.result() == READY_LINE:
            restart = f", restart {child.starts - 1}" if child.starts > 1 else ""
            _say(f"{child.name} ready on {address} (pid {process.pid}{restart})")
            return
        if not done:
            process.kill()
            await process.wait()
            raise NotReady(f"{child.name} was not ready on {address} after {STARTUP_TIMEOUT_S:.0f} s", None)
        code = await process.wait()
        raise NotReady(f"{child.name} exited with code {code} before it was ready on {address}", code)

    async def _supervise(self, child: _Child) -> None:
        """Start the service again each time it exits, after its policy's backoff; return when the
        policy gives up (a crash loop)."""
        loop = asyncio.get_running_loop()
        while True:
            assert child.process is not None
            code = await child.process.wait()
            delay = child.policy.after_exit(loop.time())
            if delay is None:
                _say(
                    f"{child.name} exited with code {code}, {child.policy.recent_exits} times within "
                    f"{child.policy.window_s:.0f} s; giving up and stopping the mesh"
                )
                return
            _say(f"{child.name} exited with code {code}; restarting it in {delay:.1f} s")
            await asyncio.sleep(delay)
            try:
                await self._start(child)
            except NotReady as exc:
                _say(str(exc))

    async def _stop(self, child: _Child) -> bool:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; True when the service exited cleanly."""
        process = child.process
        if process is None:
            return True
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            except TimeoutError:
                _say(f"{child.name} did not stop in {STOP_GRACE_S:.0f} s; killing it")
                process.kill()
                await process.wait()
                return False
            _say(f"{child.name} stopped (exit code {process.returncode})")
        return process.returncode == 0

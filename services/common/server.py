"""gRPC server bootstrap and lifecycle shared by every service.

A `MeshServer` is a grpc.aio server with the shared interceptor, standard health and reflection.
It listens before its startup hook runs (loading a model, migrating a schema), answering health
checks with NOT_SERVING until the hook is done. Its overall status ("") then says the process serves,
what a liveness check asks; each of its RPC services' statuses (a readiness check's question) is
SERVING only while the channels to the services it depends on can reach them. Shutdown follows
vLLM: a signal sets an event, health goes NOT_SERVING, in-flight RPCs get the grace period, then
engines and channels close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.common.config import ConfigError, ServiceSettings
from services.common.grpc_options import SERVER_OPTIONS
from services.common.health import reachability
from services.common.interceptor import MeshServerInterceptor
from services.common.logs import configure_logging
from services.common.metrics import serve_metrics
from services.common.ports import port_unavailable
from services.common.readiness import notify_ready
from services.common.tracing import configure_tracing, shutdown_tracing

log = logging.getLogger("llmmesh.server")

Hook = Callable[[], Awaitable[None]]


class MeshServer:
    """One service process's gRPC server and the hooks that bring its domain up and down."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        token = settings.service_token.get_secret_value() if settings.service_token else None
        self.grpc = grpc.aio.server(interceptors=[MeshServerInterceptor(token)], options=SERVER_OPTIONS)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self._service_names: list[str] = []
        self._startup: list[Hook] = []
        self._stopping: list[Hook] = []
        self._cleanup: list[Hook] = []
        self._dependencies: dict[str, grpc.aio.Channel] = {}
        self._reachable: dict[str, bool] = {}
        self._lost: set[str] = set()
        self._following: list[asyncio.Task[None]] = []
        self._started = False
        self.port = 0

    def add_service(self, full_name: str, register: Callable[[grpc.aio.Server], None]) -> None:
        """Register a servicer; `full_name` (e.g. llmmesh.store.v1.StoreService) gets its own health status."""
        register(self.grpc)
        self._service_names.append(full_name)

    def depends_on(self, name: str, channel: grpc.aio.Channel) -> None:
        """Report this server's RPC services NOT_SERVING whenever `channel` cannot reach `name`: a
        caller that sees them SERVING can expect a call to get through to it now, not only once the
        channel has waited out its reconnect backoff. The overall status ("") does not follow, so a
        liveness check never restarts this process for a dependency that is down."""
        self._dependencies[name] = channel

    def on_startup(self, hook: Hook) -> None:
        """Run hook after the server listens and before it reports SERVING."""
        self._startup.append(hook)

    def on_stopping(self, hook: Hook) -> None:
        """Run hook when shutdown begins, before in-flight RPCs drain (end long-lived streams,
        let background work finish while the channels it needs are still open)."""
        self._stopping.append(hook)

    def on_cleanup(self, hook: Hook) -> None:
        """Run hook after the server has stopped (close engines, channels); last added runs first."""
        self._cleanup.append(hook)

    def bind(self) -> int:
        """Listen on the configured address; returns the port (useful when it was 0). A port another
        process holds is a ConfigError naming the setting to change (SO_REUSEPORT is off)."""
        names = [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self.grpc)
        settings = self.settings
        try:
            self.port = self.grpc.add_insecure_port(settings.bind_address)
        except RuntimeError as exc:  # grpc says only "Failed to bind"; port_unavailable finds out why
            raise port_unavailable("gRPC", settings.host, settings.port, settings.env_name("port")) from exc
        return self.port

    async def start(self) -> None:
        """Start listening as NOT_SERVING, run the startup hooks, then report SERVING."""
        if not self.port:
            self.bind()
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc.start()
        # Followed from the start, so the channels are connecting while the hooks run.
        self._reachable = dict.fromkeys(self._dependencies, False)
        self._following = [
            asyncio.create_task(self._follow(name, channel), name=f"reach {name}")
            for name, channel in self._dependencies.items()
        ]
        try:
            for hook in self._startup:
                await hook()
        except BaseException:
            await self._stop_following()
            raise
        self._started = True
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._set_services()

    async def stop(self) -> None:
        """Graceful shutdown: NOT_SERVING, stopping hooks, drain in-flight RPCs within the grace period,
        clean up."""
        await self.health.enter_graceful_shutdown()
        await self._stop_following()
        await self._run_all(self._stopping)
        await self.grpc.stop(self.settings.shutdown_grace_s)
        await self._run_all(reversed(self._cleanup))

    @staticmethod
    async def _run_all(hooks: Iterable[Hook]) -> None:
        for hook in hooks:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *self._service_names):
            await self.health.set(name, status)

    async def _set_services(self) -> None:
        """The RPC services' status: SERVING once started while every dependency is reachable."""
        serving = self._started and all(self._reachable.values())
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._service_names:
            await self.health.set(name, status)

    async def _follow(self, name: str, channel: grpc.aio.Channel) -> None:
        async for reachable in reachability(channel):
            self._reachable[name] = reachable
            if not reachable and self._started and name not in self._lost:
                self._lost.add(name)
                log.warning("cannot reach %s: not serving until it is back", name, extra={"dependency": name})
            elif reachable and name in self._lost:
                self._lost.discard(name)
                log.info("reached %s again: serving", name, extra={"dependency": name})
            await self._set_services()

    async def _stop_following(self) -> None:
        for task in self._following:
            task.cancel()
        await asyncio.gather(*self._following, return_exceptions=True)
        self._following = []


async def serve_until_signalled(server: MeshServer, name: str) -> int:
    """Run server until SIGTERM or SIGINT; returns the process exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(server.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if starting.done() and starting.exception() is None:
        log.info("%s serving", name, extra={"port": server.port})
        notify_ready()
        await stopping
    elif starting.done() and isinstance(starting.exception(), ConfigError):  # what to fix: exit 2
        log.error("%s cannot start: %s", name, starting.exception())
        exit_code = 2
    elif starting.done():
        log.error("%s failed to start", name, exc_info=starting.exception())
        exit_code = 1
    else:
        starting.cancel()
    stopping.cancel()
    log.info("%s shutting down", name)
    await server.stop()
    log.info("%s stopped", name)
    return exit_code


@contextlib.contextmanager
def observed_process(name: str, settings: ServiceSettings) -> Iterator[None]:
    """A service process's logging, tracing (when configured) and /metrics endpoint, for its lifetime;
    the last spans are flushed on the way out."""
    configure_logging(name, settings.log_level, settings.log_format)
    configure_tracing(name)
    metrics = serve_metrics(settings.host, settings.metrics_port, settings.env_name("metrics_port"))
    try:
        yield
    finally:
        shutdown_tracing()
        if metrics is not None:
            metrics.shutdown()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (uvicorn[standard] brings it; not on Windows), else
    asyncio's own (None). gRPC's asyncio stack runs on either; on uvloop each call costs the event
    loop less (about 10-20 % of a unary call's CPU, measured), as the gateway's uvicorn already has it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_service(
    name: str, settings: ServiceSettings, create_server: Callable[..., tuple[MeshServer, int]]
) -> int:
    """Process entry point: logging, tracing and metrics, then the server built inside the event loop."""

    async def main() -> int:
        try:
            server, _ = create_server(settings)
        except ConfigError as exc:
            log.error("%s cannot start: %s", name, exc)
            return 2
        return await serve_until_signalled(server, name)

    try:
        with observed_process(name, settings), asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(main())
    except ConfigError as exc:  # from observed_process: the metrics port is taken
        log.error("%s cannot start: %s", name, exc)
        return 2

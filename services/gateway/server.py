"""Gateway process: uvicorn serving the FastAPI app, with graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from services.common.config import ConfigError
from services.common.ports import bound_socket, port_unavailable
from services.common.readiness import notify_ready
from services.common.server import observed_process
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.connections import protocol_options


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so a clean stop would end the
    process with -15; like the other services, the gateway exits 0 after a graceful stop. It reports
    readiness to `llm-mesh up` once it listens (after the app's startup)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            notify_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve() -> int:
    settings = GatewaySettings()
    try:
        with observed_process("gateway", settings):
            return _serve(settings)
    except ConfigError as exc:  # the HTTP or the metrics port is taken
        logging.getLogger("llmmesh.gateway").error("gateway cannot start: %s", exc)
        return 2


def _serve(settings: GatewaySettings) -> int:
    # Bound here rather than by uvicorn, which logs a taken port and exits 1 like any other failure;
    # it listens on this socket only once the app's startup is done.
    try:
        sock = bound_socket(settings.host, settings.port)
    except OSError as exc:
        raise port_unavailable(
            "HTTP", settings.host, settings.port, settings.env_name("port"), exc.strerror
        ) from exc
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging, configured above
        access_log=False,  # RequestIdMiddleware logs each request with its id
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        # Protocol-level pings keep idle WebSockets open through proxies and find dead peers.
        ws_ping_interval=settings.ws_ping_s,
        ws_ping_timeout=settings.ws_ping_s,
        # A WebSocket frame is held to the same size limit as a request body.
        ws_max_size=settings.max_body_bytes,
        # Header size limit and deadline (services/gateway/connections.py).
        **protocol_options(settings),
    )
    server = _GracefulServer(config)
    with sock:
        server.run(sockets=[sock])
    return 0 if server.started else 1

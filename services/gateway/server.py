"""Gateway process: uvicorn serving the FastAPI app, with graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings


def serve() -> int:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # our JSON logging, configured above
        access_log=False,  # RequestIdMiddleware logs each request with its id
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1

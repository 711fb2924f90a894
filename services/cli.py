"""The `llm-mesh` command: run the whole mesh locally, one service on its own, the store's migrations,
or a readiness probe."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from services import SERVICES


def _serve(name: str) -> int:
    from services.common.readiness import claim_ready_fd

    claim_ready_fd()  # before anything could spawn a process that inherits it
    server_module = importlib.import_module(f"services.{name}.server")
    try:
        exit_code: int = server_module.serve()
    except ValidationError as exc:  # a setting's value is refused: say which, and exit 2 as for a ConfigError
        from services.supervisor import settings_problem

        print(f"llm-mesh: {name} cannot start: {settings_problem(exc)}", file=sys.stderr)
        return 2
    return exit_code


def _migrate() -> int:
    from services.common.logs import configure_logging
    from services.store.config import StoreSettings
    from services.store.db import create_engine
    from services.store.migrate import head_revision, upgrade_to_head

    settings = StoreSettings()
    configure_logging("migrate", settings.log_level, "text")

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print(f"schema at revision {head_revision()}")
    return 0


UP_HELP = """Start the four services as child processes and keep them running.

Ports: by default each service's own setting (GATEWAY_PORT 8080, ORCHESTRATOR_PORT 50051,
INFERENCE_PORT 50052, STORE_PORT 50053, <SERVICE>_METRICS_PORT 9400-9403). --port-base N moves them all:

  gateway HTTP N   orchestrator N+1   inference N+2   store N+3   metrics N+10 .. N+13 (same order)

A port already taken stops llm-mesh at once (exit 2), naming it. Each service reports ready over its
own pipe, so another mesh on the same ports is never taken for this one. A service that exits is
restarted after 0.5 s, 1 s, 2 s, ... (a crash loop gives up, see --max-restarts); Ctrl-C or SIGTERM
stops gateway, orchestrator, inference and store in that order; if llm-mesh itself is killed, the
services get SIGTERM from the kernel (Linux)."""


def _up(
    host: str, port: int | None, port_base: int | None, max_restarts: int, parser: argparse.ArgumentParser
) -> int:
    """Run the local mesh under the supervisor until Ctrl-C; exit 2 when its ports cannot be used."""
    from services.supervisor import Ports, Supervisor, settings_problem

    if max_restarts < 0:
        parser.error("--max-restarts must be 0 or more")
    if port_base is not None:
        try:
            ports = Ports.from_base(port_base)
        except ValueError as exc:
            parser.error(str(exc))
    else:
        try:
            ports = Ports.from_settings(port)
        except ValidationError as exc:
            print(f"llm-mesh: cannot start: {settings_problem(exc)}", file=sys.stderr)
            return 2
    return asyncio.run(Supervisor(host, ports, max_restarts).run())


def _probe(target: str, timeout_s: float) -> int:
    """Exit 0 when the target is ready: an http(s) URL answering 200, or a gRPC address whose standard
    health service says SERVING (what container health checks without grpc_health_probe run)."""
    if target.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(target, timeout=timeout_s) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError) as exc:
            print(f"{target}: {exc}", file=sys.stderr)
            return 1
        return 0 if ready else 1
    with grpc.insecure_channel(target) as channel:
        try:
            status = (
                health_pb2_grpc.HealthStub(channel)
                .Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
                .status
            )
        except grpc.RpcError as exc:
            print(f"{target}: {exc.code().name}", file=sys.stderr)
            return 1
    print(f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-mesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up",
        help="start store, inference, orchestrator and gateway locally",
        description=UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument(
        "--host", default=os.environ.get("LLM_MESH_HOST", "127.0.0.1"), help="address every service binds"
    )
    where = up.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="gateway HTTP port (default: GATEWAY_PORT or 8080)")
    where.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="move every port together: gateway N, orchestrator N+1, inference N+2, store N+3, "
        "their metrics N+10..N+13",
    )
    up.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        metavar="N",
        help="a service that exits more than N times within 60 s is not started again and the mesh "
        "stops with exit code 1 (default: %(default)s)",
    )
    serve = commands.add_parser("serve", help="run one service (settings from its environment variables)")
    serve.add_argument("service", choices=SERVICES)
    commands.add_parser("migrate", help="apply the store's database migrations and exit")
    probe = commands.add_parser(
        "probe", help="exit 0 when a service is ready: a gRPC address (health SERVING) or an http URL (200)"
    )
    probe.add_argument("target", help="host:port of a gRPC service, or http://host:port/readyz")
    probe.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    if args.command == "probe":
        return _probe(args.target, args.timeout)
    if args.command == "up":
        return _up(args.host, args.port, args.port_base, args.max_restarts, up)
    if args.command == "serve":
        return _serve(args.service)
    return _migrate()


if __name__ == "__main__":
    sys.exit(main())

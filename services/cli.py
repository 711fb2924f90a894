"""The `llm-mesh` command: run the whole mesh locally, one service on its own, the store's migrations,
or a readiness probe."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Awaitable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("store", "inference", "orchestrator", "gateway")
# Generous: the first start assembles the model file from its package before loading it.
STARTUP_TIMEOUT_S = 300.0


def _serve(name: str) -> int:
    server_module = importlib.import_module(f"services.{name}.server")
    exit_code: int = server_module.serve()
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


@dataclass
class _Child:
    name: str
    port: int
    process: asyncio.subprocess.Process | None = None


def _mesh_env(host: str, ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LOG_FORMAT", "text")
    for name, port in ports.items():
        env[f"{name.upper()}_PORT"] = str(port)
        env[f"{name.upper()}_HOST"] = host
        env[f"{name.upper()}_ADDR"] = f"{host}:{port}"
    return env


async def _wait_grpc_serving(address: str, process: asyncio.subprocess.Process) -> None:
    """Return once the service reports SERVING over health Watch; fail if its process exits first."""

    async def watch() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), wait_for_ready=True
            )
            async for response in stream:
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    stream.cancel()
                    return

    await _race_exit(watch(), process, address)


async def _wait_http_listening(host: str, port: int, process: asyncio.subprocess.Process) -> None:
    """uvicorn binds only after the app's startup completed, so an accepted connection means ready."""

    async def connect() -> None:
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return

    await _race_exit(connect(), process, f"{host}:{port}")


async def _race_exit(ready: Awaitable[None], process: asyncio.subprocess.Process, where: str) -> None:
    ready_task = asyncio.ensure_future(ready)
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait(
        {ready_task, exited}, timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    for task in (ready_task, exited):
        task.cancel()
    if ready_task in done and not ready_task.cancelled() and ready_task.exception() is None:
        return
    if exited in done:
        raise RuntimeError(f"exited with code {process.returncode} before it was ready on {where}")
    raise RuntimeError(f"not ready on {where} after {STARTUP_TIMEOUT_S:.0f} s")


async def _up(host: str, gateway_port: int) -> int:
    ports = {
        "store": int(os.environ.get("STORE_PORT", 50053)),
        "inference": int(os.environ.get("INFERENCE_PORT", 50052)),
        "orchestrator": int(os.environ.get("ORCHESTRATOR_PORT", 50051)),
        "gateway": gateway_port,
    }
    env = _mesh_env(host, ports)
    children = {name: _Child(name, ports[name]) for name in SERVICES}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def start(name: str) -> None:
        child = children[name]
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            name,
            env=env,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the services in order
        )
        address = f"{host}:{child.port}"
        if name == "gateway":
            await _wait_http_listening(host, child.port, child.process)
        else:
            await _wait_grpc_serving(address, child.process)
        print(f"llm-mesh: {name} ready on {address}", file=sys.stderr, flush=True)

    async def start_all() -> None:
        await asyncio.gather(start("store"), start("inference"))
        await start("orchestrator")
        await start("gateway")

    exit_code = 0
    starting = asyncio.ensure_future(start_all())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception() is not None:
        print(f"llm-mesh: failed to start: {starting.exception()}", file=sys.stderr, flush=True)
        exit_code = 1
    elif starting.done():
        print(
            f"LLM Mesh is up. Gateway: http://{host}:{gateway_port}  (Ctrl-C to stop)\n"
            f"  try: curl -s -X POST http://{host}:{gateway_port}/api/v1/ai/generate "
            '-H \'content-type: application/json\' -d \'{"prompt":"Write a haiku about the sea","max_tokens":64}\'',
            flush=True,
        )
        exits = [asyncio.ensure_future(c.process.wait()) for c in children.values() if c.process]
        await asyncio.wait({stopping, *exits}, return_when=asyncio.FIRST_COMPLETED)
        for child in children.values():
            if child.process and child.process.returncode is not None:
                print(f"llm-mesh: {child.name} exited with code {child.process.returncode}", file=sys.stderr)
                exit_code = 1
        for task in exits:
            task.cancel()
    else:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    stopping.cancel()
    for name in reversed(SERVICES):  # callers first, so no request meets a service already gone
        if not await _stop(children[name]):
            exit_code = 1
    print("llm-mesh: stopped", file=sys.stderr, flush=True)
    return exit_code


async def _stop(child: _Child, grace_s: float = 20.0) -> bool:
    """SIGTERM, then SIGKILL after grace_s; True when the service exited cleanly."""
    process = child.process
    if process is None:
        return True
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            print(f"llm-mesh: {child.name} did not stop in {grace_s:.0f} s; killing it", file=sys.stderr)
            process.kill()
            await process.wait()
            return False
    return process.returncode == 0


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
    up = commands.add_parser("up", help="start store, inference, orchestrator and gateway locally")
    up.add_argument(
        "--host", default=os.environ.get("LLM_MESH_HOST", "127.0.0.1"), help="address every service binds"
    )
    up.add_argument(
        "--port", type=int, default=int(os.environ.get("GATEWAY_PORT", 8080)), help="gateway HTTP port"
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
        return asyncio.run(_up(args.host, args.port))
    if args.command == "serve":
        return _serve(args.service)
    return _migrate()


if __name__ == "__main__":
    sys.exit(main())

"""The mesh's services as separate processes: their environment on free ports, waiting until ready, logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.mesh import ROOT, free_port

# The job timings of the crash tests: a killed worker's jobs move to another within 1.5 s.
CRASH_JOBS = {
    "ORCHESTRATOR_JOB_CONCURRENCY": "16",
    "ORCHESTRATOR_JOB_LEASE_S": "1.5",
    "ORCHESTRATOR_JOB_HEARTBEAT_S": "0.3",
    "ORCHESTRATOR_JOB_POLL_S": "0.2",
    "INFERENCE_MAX_WAITING": "1000",
}

STARTUP_S = 180


def mesh_env(tmp: Path, database_url: str) -> dict[str, str]:
    ports = {name: free_port() for name in ("store", "inference", "orchestrator", "gateway")}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STORE_", "INFERENCE_", "ORCHESTRATOR_", "GATEWAY_", "LLM_MESH_REGISTRY"))
    }
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.update({f"{name.upper()}_METRICS_PORT": str(free_port()) for name in ports})
    env.update({f"{name.upper()}_ADDR": f"127.0.0.1:{port}" for name, port in ports.items()})
    env["STORE_DATABASE_URL"] = database_url
    # This checkout's generated stubs too: an editable install elsewhere would lend its own.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    return env


def two_orchestrators_env(tmp: Path, database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of a crash test's mesh on database_url: the first orchestrator's (and every
    other service's), and a second orchestrator's on ports of its own; one scripted model, "local";
    CRASH_JOBS' timings."""
    registry = tmp / "models.yaml"
    registry.write_text("models:\n  local:\n    backend: tests.support.fakes:ScriptedBackend\n")
    env = {**mesh_env(tmp, database_url), "LLM_MESH_REGISTRY": str(registry), **CRASH_JOBS}
    second = {**env, "ORCHESTRATOR_PORT": str(free_port()), "ORCHESTRATOR_METRICS_PORT": str(free_port())}
    return env, second


def wait_ready(base_url: str, processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"a service exited with {process.returncode}:\n{tail(logs)}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"mesh not ready after {STARTUP_S} s:\n{tail(logs)}")


def tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))


def wait_serving(address: str, process: subprocess.Popen[bytes], logs: Path) -> None:
    """Wait until the gRPC service at address reports SERVING; fail if its process exits first."""
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"a service exited with {process.returncode}:\n{tail(logs)}")
            try:
                if (
                    health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"{address} not serving:\n{tail(logs)}")


class Services:
    """Services of the mesh as separate processes (`services.cli serve <service>`), each logging to
    `<name>.log` under logs: started one at a time and waited on (gRPC health; the gateway's /readyz),
    killed by name, stopped together."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, service: str, env: dict[str, str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", service], env=env, stdout=log, stderr=log
        )
        self.processes[name] = process
        port = env[f"{service.upper()}_PORT"]
        if service == "gateway":
            wait_ready(f"http://127.0.0.1:{port}", [process], self.logs)
        else:
            wait_serving(f"127.0.0.1:{port}", process, self.logs)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash: no shutdown runs."""
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(timeout=10)

    def stop(self) -> dict[str, int]:
        """SIGTERM to every one still running; each one's exit code."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return {name: process.wait(timeout=60) for name, process in self.processes.items()}

"""The mesh's services as separate processes: their environment on free ports, waiting until ready, logs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.mesh import ROOT, free_port

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

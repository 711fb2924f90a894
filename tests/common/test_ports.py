"""A taken port fails a service at start, naming the address and the setting that moves it: gRPC servers
bind without SO_REUSEPORT (so a second server cannot silently share a port with the first), the
gateway's HTTP port and every metrics port likewise, and the process exits 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.config import ConfigError
from services.common.grpc_options import SERVER_OPTIONS
from services.common.metrics import serve_metrics
from services.common.ports import unused_port
from services.common.server import MeshServer
from services.store.config import StoreSettings
from tests.support.mesh import ROOT, free_port

MESH_PREFIXES = ("STORE_", "INFERENCE_", "ORCHESTRATOR_", "GATEWAY_", "LLM_MESH_")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_a_second_grpc_server_on_the_same_port_fails_naming_the_port_and_setting() -> None:
    assert ("grpc.so_reuseport", 0) in SERVER_OPTIONS
    first = MeshServer(StoreSettings(port=free_port()))
    port = first.bind()
    await first.start()
    try:
        second = MeshServer(StoreSettings(port=port))
        with pytest.raises(ConfigError) as taken:
            second.bind()
    finally:
        await first.stop()
    message = str(taken.value)
    assert f"127.0.0.1:{port}" in message
    assert "Address already in use" in message
    assert "set STORE_PORT to a free port" in message


def test_a_taken_metrics_port_names_the_services_own_setting(taken_port: int) -> None:
    with pytest.raises(ConfigError) as taken:
        serve_metrics("127.0.0.1", taken_port, StoreSettings.env_name("metrics_port"))
    assert f"127.0.0.1:{taken_port}" in str(taken.value)
    assert "set STORE_METRICS_PORT to a free port" in str(taken.value)


@pytest.mark.parametrize(
    ("service", "setting"),
    [("store", "STORE_PORT"), ("store", "STORE_METRICS_PORT"), ("gateway", "GATEWAY_PORT")],
)
def test_a_service_on_a_taken_port_exits_2_naming_it(
    service: str, setting: str, taken_port: int, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(MESH_PREFIXES)}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")]),
            "LOG_FORMAT": "text",
            "STORE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
            f"{service.upper()}_PORT": str(free_port()),
            f"{service.upper()}_METRICS_PORT": str(free_port()),
            setting: str(taken_port),
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr[-3000:]
    assert f"127.0.0.1:{taken_port} (Address already in use); set {setting} to a free port" in run.stderr


def test_unused_port_never_hands_out_a_port_twice() -> None:
    """A mesh's ports are all picked before any service listens, so each pick must differ from the
    others even while all of them are still free."""
    ports = [unused_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    assert all(1024 <= port < low for port in ports)

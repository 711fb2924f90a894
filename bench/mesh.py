"""Start the whole mesh with `llm-mesh up` on free loopback ports, for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from services import SERVICES
from services.common.ports import unused_port as free_port


async def _admin(server_url: str, statement: str) -> None:
    url = make_url(server_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of server_url, dropped afterwards: its URL."""
    name = f"llmmesh_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def wait_http(process: subprocess.Popen[bytes], url: str, what: str, timeout_s: float = 120) -> None:
    """Wait until url answers 200, or fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{what} was not ready within {timeout_s:.0f} s")


def _children(parent: int) -> dict[str, int]:
    """The service processes `llm-mesh up` started (`python -m services.cli <service>`), by service."""
    found: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent:
                continue
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        name = next((part.decode() for part in command if part.decode() in SERVICES), None)
        if name is not None:
            found[name] = int(stat.parent.name)
    return found


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MeshProcess:
    """`llm-mesh up` as a child process; `close()` stops it with Ctrl-C as a user would."""

    def __init__(self, database_url: str, source: Path | None = None, **env: str) -> None:
        """`source`: another checkout of the mesh to run instead of this one (a baseline to compare
        against in the same run); its services, protos and stubs are the ones imported."""
        self.ports = {name: free_port() for name in SERVICES}
        child_env = dict(os.environ, LOG_LEVEL="WARNING", STORE_DATABASE_URL=database_url, **env)
        if source is not None:
            child_env["PYTHONPATH"] = os.pathsep.join([str(source), str(source / "protos")])
        child_env.update({f"{n.upper()}_PORT": str(p) for n, p in self.ports.items()})
        # metrics too: llm-mesh up refuses to start while another mesh holds the defaults (9400-9403)
        child_env.update({f"{n.upper()}_METRICS_PORT": str(free_port()) for n in SERVICES})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--port", str(self.ports["gateway"])],
            env=child_env,
            stdout=subprocess.PIPE,
            text=True,
            cwd=source,  # `python -m` puts the working directory first on the path
        )
        assert self.process.stdout is not None
        if "LLM Mesh is up" not in self.process.stdout.readline():
            self.process.kill()
            raise SystemExit("the mesh did not start")
        self.base_url = f"http://127.0.0.1:{self.ports['gateway']}"
        self.service_pids = _children(self.process.pid)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each service's process has used so far, by service name; empty
        where /proc cannot tell (not Linux). CPU per request is the cost a shared machine's load
        disturbs least (throughput and latency move with what else runs)."""
        return {
            name: seconds for name, pid in self.service_pids.items() if (seconds := _cpu(pid)) is not None
        }

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)

"""Start the whole mesh with `llm-mesh up` on free loopback ports, for benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

SERVICES = ("store", "inference", "orchestrator", "gateway")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MeshProcess:
    """`llm-mesh up` as a child process; `close()` stops it with Ctrl-C as a user would."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.ports = {name: free_port() for name in SERVICES}
        child_env = dict(os.environ, LOG_LEVEL="WARNING", STORE_DATABASE_URL=database_url, **env)
        child_env.update({f"{n.upper()}_PORT": str(p) for n, p in self.ports.items()})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--port", str(self.ports["gateway"])],
            env=child_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if "LLM Mesh is up" not in self.process.stdout.readline():
            self.process.kill()
            raise SystemExit("the mesh did not start")
        self.base_url = f"http://127.0.0.1:{self.ports['gateway']}"

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)

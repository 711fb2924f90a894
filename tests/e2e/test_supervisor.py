"""`llm-mesh up`, the local supervisor: where --port-base puts every port, when a service that exited
is started again, and, as processes on the scripted model, that a killed service comes back, a crash
loop stops the mesh, the gateway is not ready again before the orchestrator reaches a restarted store,
two meshes run side by side, a third on their ports fails at once, and killing the supervisor with
SIGKILL takes its services with it."""

from __future__ import annotations

import os
import queue
import random
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.ports import bind_failure
from services.supervisor import Ports, RestartPolicy
from tests.support.mesh import ROOT

MESH_PREFIXES = ("STORE_", "INFERENCE_", "ORCHESTRATOR_", "GATEWAY_", "LLM_MESH_")
READY = re.compile(r"llm-mesh: (\w+) ready on [\d.]+:\d+ \(pid (\d+)")
STARTUP_S = 90


def test_port_base_moves_every_port_by_a_fixed_offset() -> None:
    ports = Ports.from_base(18000)
    assert ports.serve == {"gateway": 18000, "orchestrator": 18001, "inference": 18002, "store": 18003}
    assert ports.metrics == {"gateway": 18010, "orchestrator": 18011, "inference": 18012, "store": 18013}
    env = ports.environment("127.0.0.1")
    assert env["STORE_PORT"] == "18003" and env["STORE_METRICS_PORT"] == "18013"
    assert env["STORE_ADDR"] == "127.0.0.1:18003" and env["ORCHESTRATOR_ADDR"] == "127.0.0.1:18001"
    assert env["GATEWAY_PORT"] == "18000" and env["GATEWAY_HOST"] == "127.0.0.1"
    with pytest.raises(ValueError, match="65535"):
        Ports.from_base(65530)


def test_without_a_base_the_ports_are_the_services_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_PORT", "51000")
    monkeypatch.setenv("INFERENCE_METRICS_PORT", "0")
    ports = Ports.from_settings(gateway_port=9090)
    assert ports.serve == {"store": 51000, "inference": 50052, "orchestrator": 50051, "gateway": 9090}
    assert ports.metrics == {"store": 9403, "inference": 0, "orchestrator": 9401, "gateway": 9400}
    assert all(what != "metrics" or name != "inference" for name, what, _, _ in ports.each()), "0 is off"


def test_restarts_back_off_then_give_up_in_a_crash_loop() -> None:
    policy = RestartPolicy(max_restarts=4, window_s=60, first_delay_s=0.5, max_delay_s=3)
    assert [policy.after_exit(t) for t in (0, 1, 2, 3)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.after_exit(4) is None, "a fifth exit within the window is a crash loop"


def test_exits_older_than_the_window_are_forgotten() -> None:
    policy = RestartPolicy(max_restarts=2, window_s=60, first_delay_s=0.5)
    assert policy.after_exit(0) == 0.5
    assert policy.after_exit(30) == 1.0
    assert policy.after_exit(100) == 0.5, "both earlier exits are over a minute old"
    assert RestartPolicy(max_restarts=0).after_exit(0) is None, "--max-restarts 0: never restarted"


def free_port_base() -> int:
    """A base whose eight ports are all free, below the kernel's ephemeral range (32768 up), so ports
    other tests take with port 0 never land on it."""
    for _ in range(100):
        base = random.randrange(15000, 32000 - 20)
        if not any(bind_failure("127.0.0.1", port) for _, _, port, _ in Ports.from_base(base).each()):
            return base
    raise RuntimeError("no free block of ports")


class Up:
    """An `llm-mesh up` process on the scripted model; its output (and its services') read as it comes."""

    def __init__(self, tmp: Path, *args: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "models.yaml").write_text(
            "models:\n  scripted:\n    backend: tests.support.fakes:ScriptedBackend\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(MESH_PREFIXES)}
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos")]),
            LLM_MESH_REGISTRY=str(tmp / "models.yaml"),
            STORE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'store.db'}",
            LOG_LEVEL="WARNING",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", *args],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self.pids: dict[str, int] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def expect(self, pattern: str, timeout_s: float = STARTUP_S) -> re.Match[str]:
        """The next output line matching pattern; fails with the output so far when none comes."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self._take(line)
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines[-60:]))

    def wait(self, timeout_s: float = 60) -> int:
        """Its exit code, once it exited and its last line is read."""
        code = self.process.wait(timeout=timeout_s)
        while (line := self._new.get(timeout=timeout_s)) is not None:
            self._take(line)
        return code

    def _take(self, line: str) -> None:
        self.lines.append(line)
        if ready := READY.search(line):
            self.pids[ready[1]] = int(ready[2])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


@pytest.fixture
def meshes() -> Iterator[list[Up]]:
    """Whatever `llm-mesh up` a test starts, stopped afterwards even when it fails."""
    started: list[Up] = []
    yield started
    for up in started:
        up.stop()


def generate(base: int, prompt: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{base}/api/v1/ai/generate", json={"prompt": prompt}, timeout=10)


def wait_gone(pids: list[int], timeout_s: float = 30) -> list[int]:
    """Wait, on pidfds rather than by polling, until these processes (not our children) are gone;
    returns those still alive after timeout_s."""
    deadline = time.monotonic() + timeout_s
    alive = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                alive.append(pid)
        finally:
            os.close(fd)
    return alive


def test_a_killed_service_is_restarted_and_a_crash_loop_stops_the_mesh(
    tmp_path: Path, meshes: list[Up]
) -> None:
    base = free_port_base()
    up = Up(tmp_path, "--port-base", str(base), "--max-restarts", "1")
    meshes.append(up)
    up.expect(rf"LLM Mesh is up. Gateway: http://127.0.0.1:{base}\b")
    up.expect(rf"console: open http://127.0.0.1:{base}/ in a browser")
    assert set(up.pids) == {"store", "inference", "orchestrator", "gateway"}
    assert generate(base, "before").json()["text"] == "echo: before"

    first = up.pids["inference"]
    os.kill(first, signal.SIGKILL)
    up.expect(r"llm-mesh: inference exited with code -9; restarting it in 0.5 s", timeout_s=10)
    up.expect(rf"llm-mesh: inference ready on 127.0.0.1:{base + 2} \(pid \d+, restart 1\)")
    assert up.pids["inference"] != first
    # The orchestrator's channel reconnects on gRPC's backoff (0.2 s growing to 5 s): until its next
    # attempt after the new process is ready, a generation is a 503, as the error contract says.
    deadline = time.monotonic() + 10
    while (response := generate(base, "after")).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "echo: after", "the rest of the mesh was not torn down"

    os.kill(up.pids["inference"], signal.SIGKILL)
    up.expect(r"llm-mesh: inference exited with code -9, 2 times within 60 s; giving up", timeout_s=10)
    assert up.wait() == 1
    stopped = [m[1] for line in up.lines if (m := re.match(r"llm-mesh: (\w+) stopped \(exit code 0\)", line))]
    assert stopped == ["gateway", "orchestrator", "store"], "callers first; inference was already gone"
    assert up.lines[-1] == "llm-mesh: stopped"
    assert wait_gone(list(up.pids.values()), timeout_s=5) == []


def test_ready_again_after_a_store_restart_means_a_session_run_works(
    tmp_path: Path, meshes: list[Up]
) -> None:
    """/readyz says ready only once a request through the orchestrator would reach the restarted store:
    the gateway's own channel to the store reconnects at once, the orchestrator's may still be waiting
    out its reconnect backoff."""
    base = free_port_base()
    up = Up(tmp_path, "--port-base", str(base))
    meshes.append(up)
    up.expect("LLM Mesh is up")
    api = f"http://127.0.0.1:{base}/api/v1"
    assert httpx.post(f"{api}/templates", json={"name": "restart"}).status_code == 201
    version = httpx.post(
        f"{api}/templates/restart/versions",
        json={
            "system_prompt": "Be brief.",
            "llm_options": {"model": "scripted"},
            "options": [{"key": "sea", "label": "Sea"}],
        },
    )
    assert version.status_code == 201, version.text
    published = httpx.post(f"{api}/templates/restart/versions/{version.json()['number']}/publish")
    assert published.status_code == 200, published.text
    code = httpx.post(f"{api}/sessions", json={"template": "restart"}).json()["session_code"]
    answers = {"answers": [{"option": "sea", "value": "calm"}]}
    assert httpx.put(f"{api}/sessions/{code}/answers", json=answers).status_code == 200
    before = httpx.post(f"{api}/sessions/{code}/llm", timeout=10)
    assert before.status_code == 200, before.text

    for restart in (1, 2):
        os.kill(up.pids["store"], signal.SIGKILL)
        # /readyz is not asked while the store is down, so the gateway's channel to it stays idle and
        # reconnects the moment it is asked again: only the orchestrator's backs off meanwhile.
        up.expect(
            rf"llm-mesh: store ready on 127.0.0.1:{base + 3} \(pid \d+, restart {restart}\)", timeout_s=30
        )
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"http://127.0.0.1:{base}/readyz", timeout=5)).status_code != 200:
            assert time.monotonic() < deadline, f"not ready 30 s after the store came back: {ready.text}"
            time.sleep(0.01)
        run = httpx.post(f"{api}/sessions/{code}/llm", timeout=10)
        assert run.status_code == 200, f"ready, yet a session run failed: {run.text}"
        assert run.json() == {**before.json(), "cached": True}, (
            "the stored result, read through the orchestrator"
        )


def test_two_meshes_side_by_side_a_third_on_their_ports_fails_and_sigkill_takes_the_services(
    tmp_path: Path, meshes: list[Up]
) -> None:
    first_base = free_port_base()
    second_base = free_port_base()
    while abs(second_base - first_base) < 20:
        second_base = free_port_base()
    first = Up(tmp_path / "first", "--port-base", str(first_base))
    second = Up(tmp_path / "second", "--port-base", str(second_base))
    meshes += [first, second]
    first.expect("LLM Mesh is up")
    second.expect("LLM Mesh is up")
    assert generate(first_base, "one").json()["text"] == "echo: one"
    assert generate(second_base, "two").json()["text"] == "echo: two"
    # each mesh its own services end to end: what one stores, the other does not see
    created = httpx.post(f"http://127.0.0.1:{first_base}/api/v1/templates", json={"name": "only-first"})
    assert created.status_code == 201, created.text
    assert httpx.get(f"http://127.0.0.1:{second_base}/api/v1/templates/only-first").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{first_base}/api/v1/templates/only-first").status_code == 200

    started = time.monotonic()
    third = Up(tmp_path / "third", "--port-base", str(first_base))
    meshes.append(third)
    assert third.wait(timeout_s=30) == 2
    assert time.monotonic() - started < 15, "fails before starting anything"
    output = "\n".join(third.lines)
    assert f"port {first_base} on 127.0.0.1 (gateway HTTP, GATEWAY_PORT) is taken" in output, output
    assert f"port {first_base + 3} on 127.0.0.1 (store gRPC, STORE_PORT) is taken" in output
    assert " ready on " not in output
    assert generate(first_base, "still").json()["text"] == "echo: still", "the first mesh is untouched"

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert wait_gone(list(first.pids.values())) == [], "no service outlives a killed llm-mesh up"
    assert all(
        bind_failure("127.0.0.1", port) is None for _, _, port, _ in Ports.from_base(first_base).each()
    )
    assert generate(second_base, "alive").json()["text"] == "echo: alive"

    second.process.send_signal(signal.SIGINT)
    assert second.wait() == 0, "\n".join(second.lines)
    stopped = [
        m[1] for line in second.lines if (m := re.match(r"llm-mesh: (\w+) stopped \(exit code 0\)", line))
    ]
    assert stopped == ["gateway", "orchestrator", "inference", "store"]

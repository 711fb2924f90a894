"""Cached session runs (POST /api/v1/sessions/{code}/llm) through the gateway, at concurrency 1, 10 and 50.

Starts the mesh with `llm-mesh up` on SQLite (and on PostgreSQL when a URL is given), sets up a
published template, a session and its answers, generates the result once, then sends cached runs
from a fixed number of concurrent clients, each sending its next request when the last is answered
(a closed loop), for a bounded time and count. Every answer is checked: 200 and `cached: true`.

Usage: .venv/bin/python -m bench.cached_session [--seconds 4] [--rounds 3] [--postgres-url postgresql+asyncpg://...]
       [--concurrency 1,10,50] [--rate 500] [--against DIR] [--publish | --out DIR]
With --rate, open-loop rounds too: requests due at that rate, latency counted from when each was due.
With --against DIR, a second mesh runs from that checkout (say `git worktree add DIR main`), round by
round beside this one: a before/after in one run, under the same machine load.
Needs the `bench` extra (aiohttp, the load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from bench.mesh import MeshProcess, scratch_database
from bench.report import Part, add_output_options, machine, output_dir, percentile, write_report

CONCURRENCY = (1, 10, 50)
MAX_REQUESTS = 20_000  # per round: with the time limit, bounds a round whatever the speed


def setup_session(client: httpx.Client) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    client.post("/api/v1/templates", json={"name": name}).raise_for_status()
    client.post(
        f"/api/v1/templates/{name}/versions",
        json={
            "system_prompt": "Summarise the answers in one sentence.",
            "llm_options": {"model": "gemma-3-270m", "max_tokens": 16, "temperature": 0},
            "options": [{"key": "fever", "label": "Fever"}, {"key": "cough", "label": "Cough"}],
        },
    ).raise_for_status()
    client.post(f"/api/v1/templates/{name}/versions/1/publish").raise_for_status()
    code = str(client.post("/api/v1/sessions", json={"template": name}).json()["session_code"])
    answers = {"answers": [{"option": "fever", "value": "39 C"}, {"option": "cough"}]}
    client.put(f"/api/v1/sessions/{code}/answers", json=answers).raise_for_status()
    first = client.post(f"/api/v1/sessions/{code}/llm", timeout=120)
    first.raise_for_status()
    assert first.json()["cached"] is False
    return code


@dataclass
class Round:
    latencies: list[float]
    wall: float
    # CPU seconds each service used during the round (see MeshProcess.cpu_seconds)
    cpu: dict[str, float] = field(default_factory=dict)

    def cpu_ms_per_request(self, service: str) -> float:
        return self.cpu.get(service, 0.0) * 1e3 / max(1, len(self.latencies))

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


async def _checked(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(url) as response:
        body = await response.json()
    if response.status != 200 or body.get("cached") is not True:
        raise SystemExit(f"a cached run answered {response.status}: {body}")


async def _round(session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float) -> Round:
    """Closed loop: `concurrency` clients, each sending its next request when the last is answered."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
            started = time.perf_counter()
            await _checked(session, url)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Round(latencies, time.perf_counter() - started)


async def _open_round(
    session: aiohttp.ClientSession, url: str, rate: float, concurrency: int, seconds: float
) -> Round:
    """Open loop: requests due at a fixed rate, at most `concurrency` in flight; each latency runs from
    when its request was due, so a request that waited for a free client counts its wait too."""
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(due: float) -> None:
        try:
            await _checked(session, url)
            latencies.append(time.perf_counter() - due)
        finally:
            slots.release()

    tasks = []
    for index in range(min(int(rate * seconds), MAX_REQUESTS)):
        due = started + index / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await slots.acquire()
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    return Round(latencies, time.perf_counter() - started)


@dataclass(frozen=True)
class Load:
    """What a run sends to each mesh: closed-loop rounds at each concurrency, open-loop rounds at each
    rate (at most the highest concurrency in flight), `rounds` times, interleaved."""

    concurrency: tuple[int, ...]
    rates: tuple[float, ...]
    seconds: float
    rounds: int

    def conditions(self) -> list[str]:
        return [f"c{c}" for c in self.concurrency] + [f"{r:g}/s" for r in self.rates]


@dataclass
class Endpoint:
    """One mesh under test: its label and the URL of the cached run it is sent."""

    label: str
    url: str
    cpu_seconds: Callable[[], dict[str, float]]


async def _metered(endpoint: Endpoint, measuring: Awaitable[Round]) -> Round:
    """The round, with the CPU each of the endpoint's services spent on it."""
    before = endpoint.cpu_seconds()
    measured = await measuring
    after = endpoint.cpu_seconds()
    measured.cpu = {name: after[name] - before[name] for name in after.keys() & before.keys()}
    return measured


async def _load(targets: list[Endpoint], load: Load) -> dict[str, dict[str, list[Round]]]:
    """Rounds for every target, interleaved: each round of each condition runs on one mesh, then on the
    next (the order turning each round), so machine noise falls on all of them alike."""
    cap = max(load.concurrency)
    connector = aiohttp.TCPConnector(limit=cap * len(targets))
    results: dict[str, dict[str, list[Round]]] = {
        t.label: {c: [] for c in load.conditions()} for t in targets
    }
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in targets:
            await _round(session, target.url, cap, 1.0)  # warm-up: connections, caches
        for index in range(load.rounds):
            order = targets[index % len(targets) :] + targets[: index % len(targets)]
            for concurrency in load.concurrency:
                for target in order:
                    measured = await _metered(target, _round(session, target.url, concurrency, load.seconds))
                    results[target.label][f"c{concurrency}"].append(measured)
            for rate in load.rates:
                for target in order:
                    measured = await _metered(
                        target, _open_round(session, target.url, rate, cap, load.seconds)
                    )
                    results[target.label][f"{rate:g}/s"].append(measured)
    return results


def _run(database_url: str, sources: dict[str, Path | None], load: Load) -> dict[str, dict[str, list[Round]]]:
    """Start one mesh per source (each on its own empty database), set each up, then load them all."""
    with contextlib.ExitStack() as stack:
        targets = []
        for label, source in sources.items():
            if database_url.startswith("postgresql"):
                url = stack.enter_context(scratch_database(database_url))
            else:
                url = f"sqlite+aiosqlite:///{_scratch() / f'bench-{uuid.uuid4().hex[:8]}.db'}"
            mesh = MeshProcess(url, source)
            stack.callback(mesh.close)
            with httpx.Client(base_url=mesh.base_url, timeout=30) as client:
                code = setup_session(client)
            targets.append(Endpoint(label, f"{mesh.base_url}/api/v1/sessions/{code}/llm", mesh.cpu_seconds))
        return asyncio.run(_load(targets, load))


def _scratch() -> Path:
    scratch = Path.cwd() / ".llm-mesh"
    scratch.mkdir(exist_ok=True)
    return scratch


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def measure(
    postgres_url: str | None,
    seconds: float = 4.0,
    rounds: int = 3,
    concurrency: tuple[int, ...] = CONCURRENCY,
    rates: tuple[float, ...] = (),
    against: Path | None = None,
) -> Part:
    """Cached runs on SQLite (and PostgreSQL when a URL is given); with `against`, the same load on a
    mesh run from that checkout too, round by round beside this one."""
    load = Load(concurrency, rates, seconds, rounds)
    sources: dict[str, Path | None] = {"this tree": None}
    if against is not None:
        sources[f"baseline ({against.name})"] = against
    databases = {"SQLite": "sqlite"}
    if postgres_url:
        databases["PostgreSQL"] = postgres_url
    load_before = _load_average()
    results = {name: _run(url, sources, load) for name, url in databases.items()}
    load_after = _load_average()
    cap = max(concurrency)
    options = f"--seconds {seconds:g} --rounds {rounds} --concurrency {','.join(map(str, concurrency))}"
    if rates:
        options += f" --rate {','.join(f'{r:g}' for r in rates)}"
    if against is not None:
        options += " --against DIR"
    if postgres_url:
        options += " --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    lines = [
        "# Cached session runs through the gateway",
        "",
        f"Machine: {machine()}; load average (1, 5, 15 min) {load_before} before the run, {load_after} after.",
        "",
        "Each request is `POST /api/v1/sessions/{code}/llm` answered from the store (`cached: true`): "
        "gateway → orchestrator → store and back over loopback, four processes started by `llm-mesh up`, "
        "and the load generator (aiohttp, one process) on the same cores. Closed loop (cN): each of N "
        "clients sends its next request when the last is answered"
        + (
            f"; open loop (R/s): requests due R times a second, at most {cap} in flight, each latency "
            "counted from when its request was due"
            if rates
            else ""
        )
        + f"; {seconds:g} s (at most {MAX_REQUESTS} requests) per round; {rounds} rounds per condition, "
        f"interleaved, after a 1 s warm-up at {cap}."
        + (
            " Two meshes, this tree and a baseline checkout, run side by side: each round runs on one, then "
            "on the other, the order turning each round."
            if against is not None
            else ""
        ),
        "",
        f"Command: `.venv/bin/python -m bench` (this part alone: `.venv/bin/python -m bench.cached_session {options}`)",
        "",
        "Where a request's time goes, process by process, what was done about it, and a quiet-machine run "
        "side by side with the commit before it: [cached-session-profile.md](cached-session-profile.md).",
        "",
        "CPU ms per request: the CPU time each service's process used in a round over the requests "
        "answered in it (median over rounds); on two cores, 2000 / their sum bounds requests/s with "
        "nothing else running (the load generator takes its share too). It moves least with the "
        "machine's other load, so it is the figure to compare when that load is high.",
        "",
        "| database | mesh | load | requests/s median | min | max | latency ms p50 | p99 | max | requests "
        "| CPU ms/request gateway · orchestrator · store (sum) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, float] = {}
    for name, by_mesh in results.items():
        for label, by_condition in by_mesh.items():
            for condition, rounds_ in by_condition.items():
                rps = [r.rps for r in rounds_]
                latencies = [latency * 1e3 for r in rounds_ for latency in r.latencies]
                p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
                cpu = {
                    service: statistics.median(r.cpu_ms_per_request(service) for r in rounds_)
                    for service in ("gateway", "orchestrator", "store")
                }
                lines.append(
                    f"| {name} | {label} | {condition} | {statistics.median(rps):.0f} | {min(rps):.0f} | "
                    f"{max(rps):.0f} | {p50:.2f} | {p99:.2f} | {max(latencies):.2f} | {len(latencies)} | "
                    + " · ".join(f"{ms:.2f}" for ms in cpu.values())
                    + f" ({sum(cpu.values()):.2f}) |"
                )
                if (
                    label == "this tree"
                ):  # the summary's figures: c50 → sqlite_rps_c50, 500/s → sqlite_rps_r500
                    suffix = condition if condition.startswith("c") else "r" + condition.removesuffix("/s")
                    for figure, value in (
                        ("rps", statistics.median(rps)),
                        ("p50", p50),
                        ("p99", p99),
                        ("cpu_ms", sum(cpu.values())),
                    ):
                        figures[f"{name.lower()}_{figure}_{suffix}"] = value
    return Part("cached-session", lines, figures)


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--concurrency", type=_numbers, default=CONCURRENCY, help="closed-loop clients, comma-separated"
    )
    parser.add_argument(
        "--rate", type=_numbers, default=(), help="open-loop requests per second, comma-separated"
    )
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="also run a mesh from this checkout (a baseline), side by side",
    )
    add_output_options(parser)
    args = parser.parse_args()
    part = measure(
        args.postgres_url,
        args.seconds,
        args.rounds,
        tuple(int(c) for c in args.concurrency),
        args.rate,
        args.against.resolve() if args.against else None,
    )
    write_report(output_dir(args) / "cached-session.md", part.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cached session runs (POST /api/v1/sessions/{code}/llm) through the gateway, at concurrency 1, 10 and 50.

Starts the mesh with `llm-mesh up` on SQLite (and on PostgreSQL when a URL is given), sets up a
published template, a session and its answers, generates the result once, then sends cached runs
from a fixed number of concurrent clients, each sending its next request when the last is answered
(a closed loop), for a bounded time and count. Every answer is checked: 200 and `cached: true`.

Usage: .venv/bin/python -m bench.cached_session [--seconds 4] [--rounds 3] [--postgres-url postgresql+asyncpg://...]
       [--publish | --out DIR]
Needs the `bench` extra (aiohttp, the load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
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

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


async def _round(session: aiohttp.ClientSession, url: str, concurrency: int, seconds: float) -> Round:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS:
            started = time.perf_counter()
            async with session.post(url) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - started)
            if response.status != 200 or body.get("cached") is not True:
                raise SystemExit(f"a cached run answered {response.status}: {body}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Round(latencies, time.perf_counter() - started)


async def _load(base_url: str, code: str, seconds: float, rounds: int) -> dict[int, list[Round]]:
    url = f"{base_url}/api/v1/sessions/{code}/llm"
    connector = aiohttp.TCPConnector(limit=max(CONCURRENCY))
    async with aiohttp.ClientSession(connector=connector) as session:
        await _round(session, url, max(CONCURRENCY), 1.0)  # warm-up: connections, caches
        results: dict[int, list[Round]] = {c: [] for c in CONCURRENCY}
        for _ in range(rounds):
            for concurrency in CONCURRENCY:
                results[concurrency].append(await _round(session, url, concurrency, seconds))
    return results


def _run(database_url: str, seconds: float, rounds: int) -> dict[int, list[Round]]:
    if database_url.startswith("postgresql"):
        with scratch_database(database_url) as scratch:
            return _run_mesh(scratch, seconds, rounds)
    return _run_mesh(database_url, seconds, rounds)


def _run_mesh(database_url: str, seconds: float, rounds: int) -> dict[int, list[Round]]:
    mesh = MeshProcess(database_url)
    try:
        with httpx.Client(base_url=mesh.base_url, timeout=30) as client:
            code = setup_session(client)
        return asyncio.run(_load(mesh.base_url, code, seconds, rounds))
    finally:
        mesh.close()


def measure(postgres_url: str | None, seconds: float = 4.0, rounds: int = 3) -> Part:
    scratch = Path.cwd() / ".llm-mesh"
    scratch.mkdir(exist_ok=True)
    databases = {"SQLite": f"sqlite+aiosqlite:///{scratch / f'bench-{uuid.uuid4().hex[:8]}.db'}"}
    if postgres_url:
        databases["PostgreSQL"] = postgres_url
    results = {name: _run(url, seconds, rounds) for name, url in databases.items()}
    lines = [
        "# Cached session runs through the gateway",
        "",
        f"Machine: {machine()}.",
        "",
        "Each request is `POST /api/v1/sessions/{code}/llm` answered from the store (`cached: true`): "
        "gateway → orchestrator → store and back over loopback, four processes started by `llm-mesh up`, "
        "and the load generator (aiohttp, one process) on the same cores. Closed loop: each of c clients "
        f"sends its next request when the last is answered, for {seconds:g} s (at most {MAX_REQUESTS} requests) "
        f"per round; {rounds} rounds per concurrency, interleaved, after a 1 s warm-up at {max(CONCURRENCY)}.",
        "",
        "Command: `.venv/bin/python -m bench` (this part alone: "
        f"`.venv/bin/python -m bench.cached_session --seconds {seconds:g} --rounds {rounds}"
        + (" --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/test" if postgres_url else "")
        + "`)",
        "",
        "| database | concurrency | requests/s median | min | max | latency ms p50 | p99 | max | requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, float] = {}
    for name, by_c in results.items():
        for c, rounds_ in by_c.items():
            rps = [r.rps for r in rounds_]
            latencies = [latency * 1e3 for r in rounds_ for latency in r.latencies]
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            lines.append(
                f"| {name} | {c} | {statistics.median(rps):.0f} | {min(rps):.0f} | {max(rps):.0f} | "
                f"{p50:.2f} | {p99:.2f} | {max(latencies):.2f} | {len(latencies)} |"
            )
            key = name.lower()
            figures[f"{key}_rps_c{c}"] = statistics.median(rps)
            figures[f"{key}_p50_c{c}"] = p50
            figures[f"{key}_p99_c{c}"] = p99
    return Part("cached-session", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    add_output_options(parser)
    args = parser.parse_args()
    write_report(
        output_dir(args) / "cached-session.md", measure(args.postgres_url, args.seconds, args.rounds).lines
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

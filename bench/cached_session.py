"""Latency of a cached session run (POST /api/v1/sessions/{code}/llm) through the gateway.

Starts the mesh with `llm-mesh up` on SQLite (and on PostgreSQL when --postgres-url is given), sets up
a published template, a session and its answers, generates the result once, then times sequential
cached runs (concurrency 1) after warm-up.

Usage: .venv/bin/python -m bench.cached_session [--requests 200] [--postgres-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench.mesh import MeshProcess
from bench.report import percentile, write_report


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


def measure(database_url: str, requests: int, warmup: int) -> dict[str, float]:
    mesh = MeshProcess(database_url)
    try:
        with httpx.Client(base_url=mesh.base_url, timeout=30) as client:
            code = setup_session(client)
            url = f"/api/v1/sessions/{code}/llm"
            for _ in range(warmup):
                client.post(url).raise_for_status()
            samples = []
            started_all = time.perf_counter()
            for _ in range(requests):
                started = time.perf_counter()
                response = client.post(url)
                samples.append(time.perf_counter() - started)
                assert response.status_code == 200 and response.json()["cached"] is True
            wall = time.perf_counter() - started_all
    finally:
        mesh.close()
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "p99_ms": percentile(samples, 0.99) * 1e3,
        "min_ms": min(samples) * 1e3,
        "max_ms": max(samples) * 1e3,
        "rps": requests / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/cached-session.md"))
    args = parser.parse_args()
    databases = {
        "SQLite": f"sqlite+aiosqlite:///{Path.cwd() / '.llm-mesh' / f'bench-{uuid.uuid4().hex[:8]}.db'}"
    }
    if args.postgres_url:
        databases["PostgreSQL"] = args.postgres_url
    rows = {name: measure(url, args.requests, args.warmup) for name, url in databases.items()}
    lines = [
        "# Cached session run through the gateway",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. {args.requests} sequential requests (concurrency 1) after "
        f"{args.warmup} warm-up requests, each `POST /api/v1/sessions/{{code}}/llm` answered from the store "
        "(`cached: true`): gateway → orchestrator → store and back, over loopback, four processes.",
        "",
        "Command: `.venv/bin/python -m bench.cached_session"
        + (" --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/test" if args.postgres_url else "")
        + "`",
        "",
        "| database | median ms | p99 ms | min ms | max ms | requests/s (sequential) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['median_ms']:.2f} | {row['p99_ms']:.2f} | {row['min_ms']:.2f} | "
            f"{row['max_ms']:.2f} | {row['rps']:.0f} |"
        )
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

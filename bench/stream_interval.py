"""The inference service's stream interval side by side: meshes that differ only in
INFERENCE_STREAM_INTERVAL_MS (0: every token its own message), and llama.cpp's engine natively
in-process, taking turns round by round on the same greedy workload as bench/engine.py.

Usage: .venv/bin/python -m bench.stream_interval [--intervals 0,50] [--rounds N] [--tokens N]
Prints a table of aggregate tokens/s, its ratio to the native engine, TTFT and time per output token.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.engine import BATCHED, Native, Round, Stream, _mesh_stream, _round, registry
from bench.mesh import MeshProcess
from services.inference.config import usable_cpus


async def _measure(
    contenders: dict[str, Callable[[], Awaitable[Stream]]], concurrency: list[int], rounds: int
) -> dict[tuple[str, int], list[Round]]:
    """Every contender's rounds at each concurrency, after one warm-up round, in alternation."""
    results: dict[tuple[str, int], list[Round]] = {}
    for c in concurrency:
        for number in range(rounds + 1):
            for name, send in contenders.items():
                sample = await _round(send, c)
                if number:
                    results.setdefault((name, c), []).append(sample)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="0,50", help="stream intervals in ms, comma-separated")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    intervals = [value for value in args.intervals.split(",") if value]
    concurrency = [int(value) for value in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.yaml"
        models.write_text(registry(BATCHED))
        native = Native(usable_cpus())
        meshes = {
            f"mesh, interval {ms} ms": MeshProcess(
                f"sqlite+aiosqlite:///{folder}/s{ms}.db",
                LLM_MESH_REGISTRY=str(models),
                INFERENCE_STREAM_INTERVAL_MS=ms,
            )
            for ms in intervals
        }
        try:

            async def run() -> dict[tuple[str, int], list[Round]]:
                async with httpx.AsyncClient(timeout=600) as client:
                    contenders: dict[str, Callable[[], Awaitable[Stream]]] = {
                        name: (lambda url=mesh.base_url: _mesh_stream(client, url, BATCHED, args.tokens))
                        for name, mesh in meshes.items()
                    }
                    contenders["native, in-process"] = lambda: native.stream(args.tokens)
                    return await _measure(contenders, concurrency, args.rounds)

            results = asyncio.run(run())
        finally:
            for mesh in meshes.values():
                mesh.close()
    print(
        "| contender | concurrency | tokens/s (median) | ratio to native | TTFT ms p50 | ms per token p50 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for c in concurrency:
        native_rate = statistics.median(r.tokens_per_s for r in results[("native, in-process", c)])
        for name in [*meshes, "native, in-process"]:
            rounds = results[(name, c)]
            rate = statistics.median(r.tokens_per_s for r in rounds)
            streams = [s for r in rounds for s in r.streams]
            ttft = statistics.median(s.ttft for s in streams) * 1e3
            per_token = statistics.median(s.per_token for s in streams) * 1e3
            print(f"| {name} | {c} | {rate:.1f} | {rate / native_rate:.2f} | {ttft:.0f} | {per_token:.2f} |")


if __name__ == "__main__":
    main()

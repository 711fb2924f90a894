"""Streaming overhead: time to first token and time per output token, the same greedy generation
in-process (llama-cpp-python), through the inference service's gRPC stream, through the gateway's
SSE endpoint and through the gateway's OpenAI-compatible streaming endpoint.

Contenders run in alternation, one call each per round, after warm-up rounds.
Usage: .venv/bin/python -m bench.streaming [--reps N] [--tokens N] [--publish | --out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
from llmmesh.common.v1 import common_pb2
from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from bench.overhead import CONTEXT, MODEL, PROMPT, REPEAT_PENALTY, InProcess, Mesh, alternate
from bench.report import Part, add_output_options, machine, output_dir, spread, write_report
from services.inference.config import usable_cpus


@dataclass
class Stream:
    """One streamed generation: seconds to the first piece of text, seconds in all, tokens."""

    seconds: float
    ttft: float
    tokens: int

    @property
    def per_token(self) -> float:
        """Seconds per output token after the first."""
        return (self.seconds - self.ttft) / max(1, self.tokens - 1)


def timed(pieces: Iterator[int]) -> Stream:
    """Consume an iterator that yields 0 per text piece and the token count last."""
    started = time.perf_counter()
    first = None
    tokens = 0
    for value in pieces:
        if first is None:
            first = time.perf_counter() - started
        tokens = value or tokens
    return Stream(time.perf_counter() - started, first or 0.0, tokens)


def in_process(local: InProcess, n: int) -> Iterator[int]:
    tokens = 0
    local.llama.reset()  # the same work as the mesh's backend: the prompt evaluated afresh
    for chunk in local.llama.create_completion(
        local.prompt, max_tokens=n, temperature=0, repeat_penalty=REPEAT_PENALTY, stream=True
    ):
        choice = chunk["choices"][0]
        if choice["finish_reason"] is None:  # the last chunk only says why it ended
            tokens += 1
        if choice["text"]:
            yield 0
    yield tokens


def grpc_stream(stub: inference_pb2_grpc.InferenceServiceStub, n: int) -> Iterator[int]:
    """The inference service's stream, read with a blocking channel like the HTTP paths."""
    request = inference_pb2.GenerateRequest(
        model=MODEL,
        conversation=common_pb2.Conversation(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=PROMPT)]
        ),
        params=common_pb2.SamplingParams(max_tokens=n, temperature=0),
    )
    for response in stub.Generate(request):
        if response.HasField("delta") and response.delta.text:
            yield 0
        if response.HasField("result"):
            yield response.result.usage.completion_tokens


def gateway_sse(mesh: Mesh, n: int) -> Iterator[int]:
    body = {"prompt": PROMPT, "max_tokens": n, "temperature": 0, "stream": True}
    with mesh.http.stream("POST", "/api/v1/ai/generate", json=body) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                yield 0
            elif line.startswith("data: ") and event == "done":
                yield int(json.loads(line[6:])["tokens"])


def gateway_openai(mesh: Mesh, n: int) -> Iterator[int]:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": n,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with mesh.http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                yield int(chunk["usage"]["completion_tokens"])
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                yield 0


def measure(reps: int = 20, tokens: int = 32) -> Part:
    threads = usable_cpus()
    local = InProcess(threads)
    mesh = Mesh()
    channel = grpc.insecure_channel(f"127.0.0.1:{mesh.ports['inference']}")
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    n = tokens
    runs: dict[str, Callable[[], Stream]] = {
        "in-process (llama-cpp-python)": lambda: timed(in_process(local, n)),
        "inference gRPC stream": lambda: timed(grpc_stream(stub, n)),
        "gateway SSE (/api/v1/ai/generate)": lambda: timed(gateway_sse(mesh, n)),
        "gateway OpenAI SSE (/v1/chat/completions)": lambda: timed(gateway_openai(mesh, n)),
    }
    try:
        results = alternate(runs, reps)
    finally:
        channel.close()
        mesh.close()
    for name, samples in results.items():
        counts = {s.tokens for s in samples}
        assert counts == {n}, f"{name} generated {counts} tokens, expected {n}: runs are not comparable"

    def ttft_ms(name: str) -> float:
        return statistics.median(s.ttft for s in results[name]) * 1e3

    def tpot_ms(name: str) -> float:
        return statistics.median(s.per_token for s in results[name]) * 1e3

    base, grpc_name = next(iter(runs)), "inference gRPC stream"
    lines = [
        "# Streaming overhead: time to first token and per output token",
        "",
        f"Machine: {machine()}.",
        "",
        f"Workload: Gemma 3 270M Q4_K_M, context {CONTEXT}, {threads} llama.cpp threads, greedy, {n} output "
        f"tokens, prompt {PROMPT!r} in Gemma's turn template; in-process is `Llama.reset()` then a streamed "
        "`create_completion`, the work the mesh's backend does per request.",
        "",
        "Command: `.venv/bin/python -m bench` (this part alone: "
        f"`.venv/bin/python -m bench.streaming --reps {reps} --tokens {n}`). The four paths run in "
        "alternation, one call each per round, after 2 warm-up rounds; the mesh is `llm-mesh up` on loopback "
        "(SQLite store, auth off). TTFT is measured to the first non-empty piece of text the client reads; "
        "time per output token is (total - TTFT) / (tokens - 1).",
        "",
        "| path | TTFT ms median | p99 | min | max | TTFT added vs in-process | TTFT added vs inference gRPC | "
        "ms per token (median) | per-token added vs in-process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, samples in results.items():
        lines.append(
            f"| {name} | {spread([s.ttft for s in samples], 1e3)} | {ttft_ms(name) - ttft_ms(base):+.2f} | "
            f"{ttft_ms(name) - ttft_ms(grpc_name):+.2f} | {tpot_ms(name):.3f} | {tpot_ms(name) - tpot_ms(base):+.3f} |"
        )
    names = list(runs)
    figures = {
        "ttft_added_grpc": ttft_ms(names[1]) - ttft_ms(base),
        "ttft_added_sse": ttft_ms(names[2]) - ttft_ms(base),
        "ttft_added_openai": ttft_ms(names[3]) - ttft_ms(base),
        "tpot_added_sse": tpot_ms(names[2]) - tpot_ms(base),
    }
    return Part("streaming", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    add_output_options(parser)
    args = parser.parse_args()
    write_report(output_dir(args) / "streaming.md", measure(args.reps, args.tokens).lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

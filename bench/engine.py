"""The local engines side by side: the mesh (gateway HTTP) on its xllamacpp engine and on its
llama_cpp engine, llama.cpp's server engine called natively in-process (xllamacpp), and
`llama_cpp.server`; plus a 10-turn conversation's last-turn TTFT with and without prefix reuse.

Every request streams the same greedy workload (model, prompt, max_tokens, temperature 0, repeat
penalty, threads); a round at concurrency c is c requests sent at once, and the contenders take turns
round by round after a warm-up round. Streaming cost per token is the mesh's time per output token
(after the first) against the native engine's, at concurrency 1.

Each mesh contender serves one local model, as the default mesh does; one more serves its model
beside two other loaded local models in one inference process (their OpenMP threads share one
libgomp: see services/inference/openmp.py), from this tree and, with --against, from a baseline
checkout too.

Usage: .venv/bin/python -m bench.engine [--rounds N] [--tokens N] [--against DIR] [--publish | --out DIR]
Needs the `bench` extra (llama-cpp-python[server]).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.mesh import MeshProcess
from bench.overhead import CONTEXT, PROMPT, REPEAT_PENALTY, rendered_prompt
from bench.peer import PeerServer
from bench.report import Part, add_output_options, machine, output_dir, percentile, write_report
from services.inference.backends.llama_cpp import packaged_model_path
from services.inference.config import usable_cpus

CONCURRENCY = (1, 4, 8)
SLOTS = 4
TURNS = 10
BATCHED, FRESH, LLAMA_CPP = "gemma-3-270m", "gemma-3-270m-fresh", "gemma-3-270m-llama-cpp-python"
MODELS = {
    BATCHED: f"{{backend: llama_cpp, context_length: {CONTEXT}, slots: {SLOTS}}}",
    FRESH: f"{{backend: llama_cpp, context_length: {CONTEXT}, deterministic: true}}",
    LLAMA_CPP: f"{{backend: llama_cpp, context_length: {CONTEXT}, engine: llama_cpp}}",
}


def registry(*models: str) -> str:
    """A registry that serves the named models (of MODELS)."""
    return "models:\n" + "".join(f"  {name}: {MODELS[name]}\n" for name in models)


@dataclass
class Stream:
    """One streamed request: when it started, when its first and last tokens came, how many."""

    started: float
    first: float
    last: float
    tokens: int

    @property
    def ttft(self) -> float:
        return self.first - self.started

    @property
    def per_token(self) -> float:
        return (self.last - self.first) / max(1, self.tokens - 1)


@dataclass
class Round:
    streams: list[Stream]
    wall: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall


class Native:
    """llama.cpp's server engine in this process (xllamacpp), set up as the mesh's engine is."""

    def __init__(self, threads: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(packaged_model_path())
        params.n_parallel = SLOTS
        params.kv_unified = True
        params.n_ctx = CONTEXT * SLOTS
        params.swa_full = True
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.verbosity = -1
        self.server = xllamacpp.Server(params)
        self.prompt = rendered_prompt()

    async def stream(self, tokens: int) -> Stream:
        loop = asyncio.get_running_loop()
        marks: list[float] = []
        done = asyncio.Event()
        started = time.perf_counter()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            choice = (chunk.get("choices") or [{}])[0]
            if choice.get("finish_reason") is None:
                marks.append(time.perf_counter())
            return False

        def run() -> None:
            body = {
                "prompt": self.prompt,
                "max_tokens": tokens,
                "temperature": 0,
                "repeat_penalty": REPEAT_PENALTY,
                "stream": True,
            }
            self.server.handle_completions(body, on_chunk)
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=run, daemon=True).start()
        await done.wait()
        return Stream(started, marks[0], marks[-1], len(marks))


async def _mesh_stream(client: httpx.AsyncClient, url: str, model: str, tokens: int) -> Stream:
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True}
    started = time.perf_counter()
    marks: list[float] = []
    count = 0
    async with client.stream("POST", f"{url}/api/v1/ai/generate", json=body) as response:
        response.raise_for_status()
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "delta":
                marks.append(time.perf_counter())
            elif line.startswith("data: ") and event == "done":
                count = int(json.loads(line[6:])["tokens"])
    return Stream(started, marks[0], marks[-1], count)


async def _peer_stream(client: httpx.AsyncClient, url: str, tokens: int) -> Stream:
    body = {
        "prompt": rendered_prompt(),
        "max_tokens": tokens,
        "temperature": 0,
        "repeat_penalty": REPEAT_PENALTY,
        "stream": True,
    }
    started = time.perf_counter()
    marks: list[float] = []
    async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0].get("text"):
                    marks.append(time.perf_counter())
    return Stream(started, marks[0], marks[-1], len(marks))


async def _round(send: Callable[[], Awaitable[Stream]], concurrency: int) -> Round:
    started = time.perf_counter()
    streams = await asyncio.gather(*(send() for _ in range(concurrency)))
    return Round(list(streams), time.perf_counter() - started)


async def _conversation_ttft(client: httpx.AsyncClient, url: str, model: str, rep: int) -> float:
    """TTFT of the 10th turn of a conversation sent whole each turn (as a stored one is rendered)."""
    messages: list[dict[str, str]] = []
    ttft = 0.0
    for turn in range(TURNS):
        messages.append(
            {"role": "user", "content": f"Conversation {rep}, turn {turn}: tell me about the sea."}
        )
        body = {"model": model, "messages": messages, "max_tokens": 24, "temperature": 0, "stream": True}
        started = time.perf_counter()
        first = 0.0
        parts: list[str] = []
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                if content:
                    first = first or time.perf_counter()
                    parts.append(content)
        ttft = first - started
        messages.append({"role": "assistant", "content": "".join(parts)})
    return ttft


SINGLE_XLLAMACPP = f"mesh, xllamacpp engine ({SLOTS} slots)"
SHARED = f"mesh, xllamacpp engine ({SLOTS} slots), 3 local models in its process"
NATIVE = f"xllamacpp native, in-process ({SLOTS} slots)"
PEER = "llama_cpp.server"


async def _measure(
    urls: dict[str, str], peer_url: str, native: Native, rounds: int, tokens: int
) -> dict[str, Any]:
    """`urls`: the base URL of each mesh, by the contender it serves ("fresh": the mesh of the
    conversation without prefix reuse)."""
    async with httpx.AsyncClient(timeout=600) as client:
        contenders: dict[str, Callable[[], Awaitable[Stream]]] = {
            SINGLE_XLLAMACPP: lambda: _mesh_stream(client, urls[SINGLE_XLLAMACPP], BATCHED, tokens),
            "mesh, llama_cpp engine": lambda: _mesh_stream(
                client, urls["mesh, llama_cpp engine"], LLAMA_CPP, tokens
            ),
        }
        for name, url in urls.items():
            if name.startswith(SHARED):
                contenders[name] = lambda url=url: _mesh_stream(client, url, BATCHED, tokens)
                for model in (FRESH, LLAMA_CPP):  # every model its process holds is loaded
                    await _mesh_stream(client, url, model, 2)
        contenders[NATIVE] = lambda: native.stream(tokens)
        contenders[PEER] = lambda: _peer_stream(client, peer_url, tokens)
        turns: dict[str, list[float]] = {BATCHED: [], FRESH: []}
        for rep in range(rounds):
            for model, url in ((BATCHED, urls[SINGLE_XLLAMACPP]), (FRESH, urls["fresh"])):
                print(f"engine: conversation {rep} on {model}", file=sys.stderr, flush=True)
                turns[model].append(await _conversation_ttft(client, url, model, rep))
        results: dict[str, dict[int, list[Round]]] = {
            name: {c: [] for c in CONCURRENCY} for name in contenders
        }
        for concurrency in CONCURRENCY:
            for round_ in range(rounds + 1):  # the first round warms up
                for name, send in contenders.items():
                    print(f"engine: c{concurrency} round {round_} {name}", file=sys.stderr, flush=True)
                    sample = await _round(send, concurrency)
                    if round_:
                        results[name][concurrency].append(sample)
    return {"rounds": results, "turns": turns}


def measure(rounds: int = 3, tokens: int = 64, against: Path | None = None) -> Part:
    """The table, per-token cost and 10th-turn figures; with `against`, the shared-process
    contender from that checkout too (a baseline, side by side)."""
    threads = usable_cpus()
    # Each mesh's models, and the checkout it runs from (None: this tree).
    layout: dict[str, tuple[tuple[str, ...], Path | None]] = {
        SINGLE_XLLAMACPP: ((BATCHED,), None),
        "mesh, llama_cpp engine": ((LLAMA_CPP,), None),
        "fresh": ((FRESH,), None),
        SHARED: (tuple(MODELS), None),
    }
    if against is not None:
        layout[f"{SHARED}, baseline ({against.name})"] = (tuple(MODELS), against)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        peer = PeerServer(threads)
        stack.callback(peer.close)
        native = Native(threads)
        urls: dict[str, str] = {}
        for number, (name, (models, source)) in enumerate(layout.items()):
            path = Path(folder) / f"models-{number}.yaml"
            path.write_text(registry(*models))
            mesh = MeshProcess(
                f"sqlite+aiosqlite:///{folder}/engine-{number}.db",
                source,
                LLM_MESH_REGISTRY=str(path),
                INFERENCE_MAX_LOADED_MODELS=str(len(models)),
            )
            stack.callback(mesh.close)
            urls[name] = mesh.base_url
        measured = asyncio.run(_measure(urls, peer.base_url, native, rounds, tokens))
    results: dict[str, dict[int, list[Round]]] = measured["rounds"]
    names = list(results)

    def tps(name: str, c: int) -> float:
        return statistics.median(r.tokens_per_s for r in results[name][c])

    def streams(name: str, c: int) -> list[Stream]:
        return [s for r in results[name][c] for s in r.streams]

    def per_token(name: str, c: int) -> float:
        return statistics.median(s.per_token for s in streams(name, c))

    command = f"--rounds {rounds} --tokens {tokens}" + (" --against DIR" if against is not None else "")
    lines = [
        "# Local engines: the mesh on xllamacpp and on llama-cpp-python, llama.cpp's engine natively, llama_cpp.server",
        "",
        f"Machine: {machine()}. The ratios compare contenders measured round by round in alternation; "
        "other work on the machine moves the absolute figures more than them.",
        "",
        f"Workload: Gemma 3 270M Q4_K_M, context {CONTEXT}, {threads} threads everywhere, greedy "
        f"(temperature 0), repeat penalty {REPEAT_PENALTY}, {tokens} output tokens, prompt {PROMPT!r} in "
        "Gemma's turn template, every request streamed. A round at concurrency c is c requests at once; "
        f"{rounds} rounds per concurrency after one warm-up round, the contenders taking turns round by round. "
        f"The xllamacpp engine and the native one have {SLOTS} slots (at concurrency 8, four wait); "
        "llama-cpp-python's Llama (the mesh's llama_cpp engine, and llama_cpp.server) serves one request at a time. "
        "Each mesh serves one local model, as the default mesh does, except the one whose inference process "
        f"also holds {FRESH} and {LLAMA_CPP} (loaded, idle while it is measured).",
        "",
        "Notes on these figures, with side-by-side runs of their own and the issue's targets: "
        "[engine-notes.md](engine-notes.md).",
        "",
        f"Command: `.venv/bin/python -m bench` (this part alone: `.venv/bin/python -m bench.engine {command}`)",
        "",
        "| server | concurrency | aggregate tokens/s (median) | ratio to native | ratio to llama_cpp.server | "
        "TTFT ms p50 | p99 | ms per token p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, float] = {}
    for c in CONCURRENCY:
        for name in names:
            ttfts = [s.ttft for s in streams(name, c)]
            lines.append(
                f"| {name} | {c} | {tps(name, c):.1f} | {tps(name, c) / tps(NATIVE, c):.2f} | "
                f"{tps(name, c) / tps(PEER, c):.2f} | {statistics.median(ttfts) * 1e3:.0f} | "
                f"{percentile(ttfts, 0.99) * 1e3:.0f} | {per_token(name, c) * 1e3:.2f} |"
            )
        figures[f"native_ratio_c{c}"] = tps(SINGLE_XLLAMACPP, c) / tps(NATIVE, c)
        figures[f"peer_ratio_c{c}"] = tps(SINGLE_XLLAMACPP, c) / tps(PEER, c)
        figures[f"mesh_tps_c{c}"] = tps(SINGLE_XLLAMACPP, c)
        figures[f"shared_native_ratio_c{c}"] = tps(SHARED, c) / tps(NATIVE, c)
    native_tpot = per_token(NATIVE, 1)
    figures["stream_overhead"] = (per_token(SINGLE_XLLAMACPP, 1) - native_tpot) / native_tpot
    figures["shared_stream_overhead"] = (per_token(SHARED, 1) - native_tpot) / native_tpot
    turns: dict[str, list[float]] = measured["turns"]
    reuse, fresh = statistics.median(turns[BATCHED]), statistics.median(turns[FRESH])
    figures["turn10_ttft_ratio"] = reuse / fresh
    overheads = "; ".join(
        f"{name} {per_token(name, 1) * 1e3:.2f} ms ({(per_token(name, 1) - native_tpot) / native_tpot * 100:+.1f} %)"
        for name in names
        if name.startswith("mesh")
    )
    lines += [
        "",
        "## Streaming cost per token",
        "",
        f"Time per output token after the first, concurrency 1, median, through the gateway's SSE against the "
        f"native engine's {native_tpot * 1e3:.2f} ms: {overheads}.",
        "",
        f"## The {TURNS}th turn of a conversation, with and without prefix reuse",
        "",
        f"A conversation sent whole every turn through the OpenAI chat door (24 tokens per answer, greedy); "
        f"TTFT of turn {TURNS}, median of {rounds} conversations: with prefix reuse ({BATCHED}, the earlier "
        f"turns already in a slot) {reuse * 1e3:.0f} ms; without ({FRESH}, deterministic mode: every prompt "
        f"evaluated whole) {fresh * 1e3:.0f} ms; ratio {reuse / fresh:.2f}.",
    ]
    return Part("engine", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--against",
        type=Path,
        metavar="DIR",
        help="also run the shared-process mesh from this checkout (a baseline), side by side",
    )
    add_output_options(parser)
    args = parser.parse_args()
    against = args.against.resolve() if args.against else None
    write_report(output_dir(args) / "engine.md", measure(args.rounds, args.tokens, against).lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

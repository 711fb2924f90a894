"""Batch API benchmark: lines per second through the job queue, on the canned tier (the queue's own
cost) and on the local model, and the p50 latency of live requests with and without a batch running.

The whole mesh runs with `llm-mesh up` on a scratch PostgreSQL database, with a registry of the
packaged Gemma 3 270M and a canned set that answers "ping <n>" without a model call; the client is
the openai SDK, as a user's would be. Every run is bounded: a fixed number of lines and requests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from sqlalchemy.engine import make_url

from bench.mesh import MeshProcess, scratch_database
from bench.report import SPREAD_HEADER, Part, add_output_options, machine, output_dir, spread, write_report

REGISTRY = """\
models:
  gemma-3-270m:
    backend: llama_cpp
canned:
  pings:
    - match: "^ping \\\\d+$"
      reply: pong
routes:
  default:
    - model: gemma-3-270m
  canned:
    - canned: pings
    - model: gemma-3-270m
"""
MODEL_TOKENS = 16
# The orchestrator's default ORCHESTRATOR_JOB_CONCURRENCY.
DEFAULT_CONCURRENCY = 4
ENDED = ("completed", "failed", "expired", "cancelled")


def _line(index: int, model: str, text: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": MODEL_TOKENS}
    return {"custom_id": f"line-{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _submit(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("lines.jsonl", content), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id


def _wait(client: openai.OpenAI, batch_id: str, timeout_s: float = 600) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ENDED:
            return batch
        time.sleep(0.05)
    raise SystemExit(f"batch {batch_id} did not end within {timeout_s:.0f} s")


def lines_per_s(client: openai.OpenAI, lines: list[dict[str, Any]]) -> float:
    """Lines answered per second, from batches.create returning to the batch seen completed."""
    started = time.perf_counter()
    batch = _wait(client, _submit(client, lines))
    elapsed = time.perf_counter() - started
    if batch.status != "completed" or batch.request_counts.completed != len(lines):
        raise SystemExit(f"the batch ended {batch.status} with {batch.request_counts}")
    return len(lines) / elapsed


def live_latencies(client: openai.OpenAI, requests: int) -> list[float]:
    """Seconds per live chat completion (the same question, MODEL_TOKENS tokens), one at a time."""
    took = []
    for index in range(requests):
        started = time.perf_counter()
        client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": f"Say one word about the number {index}."}],
            max_tokens=MODEL_TOKENS,
        )
        took.append(time.perf_counter() - started)
    return took


def _mesh(database_url: str, registry: Path, concurrency: int) -> MeshProcess:
    return MeshProcess(
        database_url, LLM_MESH_REGISTRY=str(registry), ORCHESTRATOR_JOB_CONCURRENCY=str(concurrency)
    )


def measure(
    postgres_url: str, canned_lines: int = 2000, model_lines: int = 16, live: int = 10, concurrency: int = 16
) -> Part:
    """The canned tier on a mesh whose orchestrator runs `concurrency` jobs at once (the queue's own
    cost); the local model and the live requests on one with the default 4 (2 of them batch lines)."""
    with tempfile.TemporaryDirectory() as scratch:
        registry = Path(scratch) / "models.yaml"
        registry.write_text(REGISTRY)
        with scratch_database(postgres_url) as database_url:
            mesh = _mesh(database_url, registry, concurrency)
            try:
                client = openai.OpenAI(
                    base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=300
                )
                lines_per_s(client, [_line(i, "canned", f"ping {i}") for i in range(100)])  # warm-up
                canned = lines_per_s(client, [_line(i, "canned", f"ping {i}") for i in range(canned_lines)])
                client.close()
            finally:
                mesh.close()
        with scratch_database(postgres_url) as database_url:
            mesh = _mesh(database_url, registry, DEFAULT_CONCURRENCY)
            try:
                client = openai.OpenAI(
                    base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=300
                )
                live_latencies(client, 3)  # warm-up of the model
                load_before = os.getloadavg()[0]
                idle = live_latencies(client, live)
                model = lines_per_s(
                    client, [_line(i, "default", f"Name a fruit, number {i}.") for i in range(model_lines)]
                )
                # The same live requests while a batch keeps the worker's batch share of slots busy.
                batch_id = _submit(
                    client, [_line(i, "default", f"Name a tree, number {i}.") for i in range(model_lines * 4)]
                )
                busy = live_latencies(client, live)
                during = client.batches.retrieve(batch_id)
                load_after = os.getloadavg()[0]
                if during.status == "in_progress":
                    client.batches.cancel(batch_id)
                _wait(client, batch_id)
                client.close()
            finally:
                mesh.close()
    lines = [
        "# Batch API through the job queue",
        "",
        f"Machine: {machine()}; PostgreSQL at {make_url(postgres_url).host}:{make_url(postgres_url).port}. "
        f"The machine was shared: load average {load_before:.1f} before the model runs, {load_after:.1f} after.",
        "",
        "The whole mesh (`llm-mesh up`) on a scratch PostgreSQL database, the openai SDK as the client, the "
        "packaged Gemma 3 270M (the llama_cpp engine: one sequence at a time). Lines/s is timed from "
        "`batches.create` returning to `batches.retrieve` answering `completed` (polled every 50 ms). The "
        f"canned tier runs with ORCHESTRATOR_JOB_CONCURRENCY={concurrency} (at most {max(1, concurrency // 2)} batch "
        f"lines at a time, ORCHESTRATOR_JOB_BATCH_SHARE 0.5); the model and the live requests with the default "
        f"{DEFAULT_CONCURRENCY} (at most {DEFAULT_CONCURRENCY // 2} batch lines at a time).",
        "",
        "Command: `.venv/bin/python -m bench.batch --postgres-url <server> --publish` "
        f"(--canned-lines {canned_lines} --model-lines {model_lines} --live {live})",
        "",
        "## Lines per second",
        "",
        "| lines | tier | lines/s |",
        "|---:|---|---:|",
        f"| {canned_lines} | canned (no model call: the queue's own cost) | {canned:.0f} |",
        f"| {model_lines} | Gemma 3 270M, {MODEL_TOKENS} tokens each | {model:.2f} |",
        "",
        f"## Live chat completions ({live} one at a time, {MODEL_TOKENS} tokens each, Gemma 3 270M)",
        "",
        f"| while | latency s {SPREAD_HEADER} |",
        "|---|---:|---:|---:|---:|",
        f"| no batch runs | {spread(idle)} |",
        f"| a {model_lines * 4}-line batch runs on the same model | {spread(busy)} |",
        "",
        f"The batch was {during.status} when the last live request was answered "
        f"({during.request_counts.completed} of {during.request_counts.total} lines answered).",
    ]
    figures = {
        "canned_lines_per_s": canned,
        "model_lines_per_s": model,
        "live_p50_s": statistics.median(idle),
        "live_p50_during_batch_s": statistics.median(busy),
    }
    return Part("batch", lines, figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL"))
    parser.add_argument("--canned-lines", type=int, default=2000)
    parser.add_argument("--model-lines", type=int, default=16)
    parser.add_argument("--live", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    add_output_options(parser)
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error(
            "give --postgres-url (or set LLM_MESH_TEST_POSTGRES_URL): the batch benchmark runs on PostgreSQL"
        )
    part = measure(args.postgres_url, args.canned_lines, args.model_lines, args.live, args.concurrency)
    write_report(output_dir(args) / "batch.md", part.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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


def measure(
    postgres_url: str, canned_lines: int = 2000, model_lines: int = 32, live: int = 20, concurrency: int = 16
) -> Part:
    with tempfile.TemporaryDirectory() as scratch, scratch_database(postgres_url) as database_url:
        registry = Path(scratch) / "models.yaml"
        registry.write_text(REGISTRY)
        mesh = MeshProcess(
            database_url, LLM_MESH_REGISTRY=str(registry), ORCHESTRATOR_JOB_CONCURRENCY=str(concurrency)
        )
        try:
            client = openai.OpenAI(
                base_url=f"{mesh.base_url}/v1", api_key="unused", max_retries=0, timeout=120
            )
            lines_per_s(client, [_line(i, "canned", f"ping {i}") for i in range(100)])  # warm-up
            canned = lines_per_s(client, [_line(i, "canned", f"ping {i}") for i in range(canned_lines)])
            live_latencies(client, 3)  # warm-up of the model
            model = lines_per_s(
                client, [_line(i, "default", f"Name a fruit, number {i}.") for i in range(model_lines)]
            )
            idle = live_latencies(client, live)
            # The same live requests while a batch keeps the worker's batch share of slots busy.
            batch_id = _submit(
                client, [_line(i, "default", f"Name a tree, number {i}.") for i in range(model_lines * 4)]
            )
            busy = live_latencies(client, live)
            during = client.batches.retrieve(batch_id)
            still_running = during.status == "in_progress"
            if still_running:
                client.batches.cancel(batch_id)
            _wait(client, batch_id)
            client.close()
        finally:
            mesh.close()
    share = max(1, concurrency // 2)
    lines = [
        "# Batch API through the job queue",
        "",
        f"Machine: {machine()}; PostgreSQL at {make_url(postgres_url).host}:{make_url(postgres_url).port}.",
        "",
        "The whole mesh (`llm-mesh up`) on a scratch PostgreSQL database, the openai SDK as the client; "
        f"ORCHESTRATOR_JOB_CONCURRENCY={concurrency}, so a batch runs at most {share} lines at a time "
        "(ORCHESTRATOR_JOB_BATCH_SHARE 0.5). Lines/s is timed from `batches.create` returning to "
        "`batches.retrieve` answering `completed`, so it includes the poll (every 50 ms).",
        "",
        "Command: `.venv/bin/python -m bench.batch --postgres-url <server>` "
        f"(--canned-lines {canned_lines} --model-lines {model_lines} --live {live})",
        "",
        "## Lines per second",
        "",
        "| lines | tier | lines/s |",
        "|---:|---|---:|",
        f"| {canned_lines} | canned (no model call: the queue's own cost) | {canned:.0f} |",
        f"| {model_lines} | Gemma 3 270M, {MODEL_TOKENS} tokens each | {model:.2f} |",
        "",
        f"## Live chat completions ({live} one at a time, {MODEL_TOKENS} tokens each)",
        "",
        f"| while | latency s {SPREAD_HEADER} |",
        "|---|---:|---:|---:|",
        f"| no batch runs | {spread(idle)} |",
        f"| a {model_lines * 4}-line batch runs on the same model | {spread(busy)} |",
        "",
        f"The batch was still in progress when the last live request was answered: {still_running}.",
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
    parser.add_argument("--model-lines", type=int, default=32)
    parser.add_argument("--live", type=int, default=20)
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

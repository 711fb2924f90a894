"""Metrics and traces of the mesh as operators see them: the four services as processes (scripted
models), each serving /metrics on its own port and exporting spans over OTLP to a collector that
this test runs (a real gRPC server with OpenTelemetry's own proto). After real traffic through the
gateway, every service's /metrics is scraped and the values must have moved by exactly what was
done; the spans of one request must form one trace across the services."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import sse_events
from tests.support.mesh import Gateway, free_port
from tests.support.processes import mesh_env, tail, wait_ready
from tests.support.sessions import ANSWERS, make_session, make_version

SERVICES = ("store", "inference", "orchestrator", "gateway")
REGISTRY = """
models:
  local:
    backend: tests.support.fakes:ScriptedBackend
  remote:
    backend: tests.support.fakes:ScriptedBackend
    pool: gone
pools:
  gone: 127.0.0.1:{gone_port}
canned:
  greetings:
    - match: '^hi$'
      reply: Hello!
routes:
  default:
    - canned: greetings
    - model: local
  fallback:
    - model: remote
    - model: local
pipelines:
  stuck:
    steps:
      - name: wait
        prompt: stall
"""


@dataclass
class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps every span with the service that sent it."""

    spans: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: bytes) -> list[tuple[str, Any]]:
        with self.lock:
            return [(service, span) for service, span in self.spans if span.trace_id == trace_id]


@dataclass
class Mesh:
    base_url: str
    metrics: dict[str, str]
    collector: Collector
    logs: Path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("observed")
    collector = Collector()
    otlp = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, otlp)
    otlp_port = otlp.add_insecure_port("127.0.0.1:0")
    otlp.start()
    registry = tmp / "models.yaml"
    registry.write_text(REGISTRY.format(gone_port=free_port()))
    env = mesh_env(tmp, f"sqlite+aiosqlite:///{tmp / 'store.db'}")
    env.update(
        LLM_MESH_REGISTRY=str(registry),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans reach the collector soon after they end
        ORCHESTRATOR_RETRY_ATTEMPTS="1",  # the unreachable pool falls back at once
        # A safety net only: the slow stream below is left as soon as its gauges are read, which on a
        # loaded machine may take seconds.
        ORCHESTRATOR_GENERATION_TIMEOUT_S="20",
        ORCHESTRATOR_JOB_POLL_S="0.2",
        PIPELINE_STALL_S="0.5",
    )
    processes = []
    for name in SERVICES:
        log = (tmp / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", name], env=env, stderr=log, stdout=log
            )
        )
    base_url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    try:
        wait_ready(base_url, processes, tmp)
        yield Mesh(
            base_url,
            {name: f"http://127.0.0.1:{env[f'{name.upper()}_METRICS_PORT']}/metrics" for name in SERVICES},
            collector,
            tmp,
        )
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
        otlp.stop(grace=None)
    assert codes == [0, 0, 0, 0], f"every service stops cleanly on SIGTERM:\n{tail(tmp)}"


@pytest.fixture
async def client(mesh: Mesh) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10) as client:
        yield client


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_every_service_counts_real_traffic_by_bounded_labels(
    mesh: Mesh, client: httpx.AsyncClient
) -> None:
    before = {name: await scrape(url) for name, url in mesh.metrics.items()}

    plain = [await client.post("/api/v1/ai/generate", json={"prompt": f"count me {i}"}) for i in range(3)]
    assert [r.status_code for r in plain] == [200, 200, 200]
    streamed = await client.post(
        "/api/v1/ai/generate", json={"prompt": "stream these five words", "stream": True}
    )
    assert streamed.status_code == 200
    done = next(data for kind, data in sse_events(streamed.text) if kind == "done")
    canned = await client.post("/api/v1/ai/generate", json={"prompt": "hi"})
    assert canned.json()["text"] == "Hello!"
    fallen_back = await client.post("/api/v1/ai/generate", json={"prompt": "carry on", "model": "fallback"})
    assert fallen_back.status_code == 200, fallen_back.text
    assert fallen_back.json()["model"] == "local"
    job_id = uuid.uuid4().hex
    missing = await client.get(f"/api/v1/ai/status/{job_id}")
    assert missing.status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404
    gateway = Gateway(client, None)  # type: ignore[arg-type]
    await make_version(gateway, llm_options={"model": "local", "max_tokens": 50})
    code = await make_session(gateway, ANSWERS)
    runs = [await client.post(f"/api/v1/sessions/{code}/llm") for _ in range(2)]
    assert [r.json()["cached"] for r in runs] == [False, True]
    job = await client.post("/api/v1/ai/generate", json={"prompt": "later", "async": True})
    assert job.status_code == 202
    for _ in range(100):
        status = (await client.get(job.json()["status_url"])).json()
        if status["status"] == "SUCCEEDED":
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "SUCCEEDED", status

    after = {name: await scrape(url) for name, url in mesh.metrics.items()}

    def moved(service: str, name: str, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    # gateway: HTTP by route template, never the raw path
    generate = {"method": "POST", "route": "/api/v1/ai/generate"}
    assert moved("gateway", "llmmesh_http_requests_total", **generate, status="200") == 6
    assert moved("gateway", "llmmesh_http_requests_total", **generate, status="202") == 1
    assert moved("gateway", "llmmesh_http_request_duration_seconds_count", **generate) == 7
    assert (
        moved(
            "gateway",
            "llmmesh_http_requests_total",
            method="GET",
            route="/api/v1/ai/status/{job_id}",
            status="404",
        )
        == 1
    )
    assert moved("gateway", "llmmesh_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(after["gateway"], "llmmesh_http_requests_in_flight") == 0
    for service, samples in after.items():
        for _, labels in samples:
            assert all(job_id not in v and code not in v for _, v in labels), (service, labels)
    orchestrator_call = {
        "grpc_service": "llmmesh.orchestrator.v1.OrchestratorService",
        "grpc_method": "RunGeneration",
    }
    assert moved("gateway", "grpc_client_handled_total", **orchestrator_call, grpc_code="OK") == 5
    assert moved("orchestrator", "grpc_server_handled_total", **orchestrator_call, grpc_code="OK") == 5
    assert moved("orchestrator", "grpc_server_handling_seconds_count", **orchestrator_call) == 5

    # orchestrator: generations by route, model, tier and outcome; latency, tokens, fallbacks, cache
    served = {"route": "default", "model": "local", "tier": "1", "outcome": "ok"}
    assert moved("orchestrator", "llmmesh_generations_total", **served) == 5  # 3 plain, 1 stream, 1 job
    canned_served = {"route": "default", "model": "canned:greetings", "tier": "0", "outcome": "ok"}
    assert moved("orchestrator", "llmmesh_generations_total", **canned_served) == 1
    assert (
        moved(
            "orchestrator",
            "llmmesh_generations_total",
            route="fallback",
            model="local",
            tier="1",
            outcome="ok",
        )
        == 1
    )
    assert moved("orchestrator", "llmmesh_generation_fallbacks_total", route="fallback", model="remote") == 1
    assert moved("orchestrator", "llmmesh_generation_time_to_first_token_seconds_count", model="local") == 1
    assert moved("orchestrator", "llmmesh_generation_time_per_output_token_seconds_count", model="local") == 1
    assert moved("orchestrator", "llmmesh_generation_duration_seconds_count", model="local") == 7
    completion = sum(r.json()["usage"]["completion_tokens"] for r in [*plain, fallen_back, runs[0]])
    completion += done["usage"]["completion_tokens"] + status["result"]["usage"]["completion_tokens"]
    assert moved("orchestrator", "llmmesh_generation_completion_tokens_total", model="local") == completion
    assert moved("orchestrator", "llmmesh_session_results_total", cache="miss") == 1
    assert moved("orchestrator", "llmmesh_session_results_total", cache="hit") == 1
    assert moved("orchestrator", "llmmesh_job_attempts_total", kind="generate", outcome="succeeded") == 1
    assert moved("orchestrator", "llmmesh_job_attempts_per_job_count", kind="generate") == 1
    assert value(after["orchestrator"], "llmmesh_jobs_running", kind="generate") == 0
    # the orchestrator's calls to the unreachable pool failed UNAVAILABLE, as its client saw them
    inference_call = {"grpc_service": "llmmesh.inference.v1.InferenceService", "grpc_method": "Generate"}
    assert moved("orchestrator", "grpc_client_handled_total", **inference_call, grpc_code="UNAVAILABLE") == 1
    assert moved("orchestrator", "grpc_client_handled_total", **inference_call, grpc_code="OK") == 7

    # inference: the served calls, and the pool's gauges (idle now) under both names
    assert moved("inference", "grpc_server_handled_total", **inference_call, grpc_code="OK") == 7
    assert value(after["inference"], "llmmesh_inference_model_loaded", model="local", backend="scripted") == 1
    assert value(after["inference"], "llmmesh_inference_model_load_seconds_count", model="local") == 1
    assert ("vllm:num_requests_waiting", frozenset({("model_name", "local")})) in after["inference"]
    assert value(after["inference"], "vllm:num_requests_running", model_name="local") == 0

    # store: the queue is drained; the workers' claims were answered
    assert value(after["store"], "llmmesh_jobs", kind="generate", status="queued") == 0
    assert value(after["store"], "llmmesh_jobs", kind="generate", status="running") == 0
    claims = {"grpc_service": "llmmesh.store.v1.StoreService", "grpc_method": "ClaimJobs", "grpc_code": "OK"}
    assert moved("store", "grpc_server_handled_total", **claims) >= 1


async def test_running_requests_and_stalled_runs_show_while_they_last(
    mesh: Mesh, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", "/api/v1/ai/generate", json={"prompt": "slow 400", "stream": True}
    ) as stream:
        async for _ in stream.aiter_lines():
            break  # the model is generating now, until the stream is left (or the mesh's deadline)
        inference = await scrape(mesh.metrics["inference"])
        assert value(inference, "vllm:num_requests_running", model_name="local") == 1
        assert value(inference, "llmmesh_inference_requests_running", model="local") == 1
    run = await client.post("/api/v1/pipelines/stuck/runs", json={"input": {}})
    assert run.status_code == 202, run.text
    try:
        for _ in range(100):
            store = await scrape(mesh.metrics["store"])
            if value(store, "llmmesh_pipeline_runs_stalled") == 1:
                break
            await asyncio.sleep(0.1)
        assert value(store, "llmmesh_pipeline_runs_stalled") == 1
        assert value(store, "llmmesh_jobs", kind="pipeline_step", status="running") == 1
    finally:
        cancel = await client.post(f"{run.headers['location']}/cancel")
        assert cancel.status_code == 200, cancel.text
    store = await scrape(mesh.metrics["store"])
    assert value(store, "llmmesh_pipeline_runs_stalled") == 0


async def test_one_request_is_one_trace_across_the_services(mesh: Mesh, client: httpx.AsyncClient) -> None:
    request_id = f"traced-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "local", "messages": [{"role": "user", "content": "follow me"}]},
        headers={"X-Request-ID": request_id, "X-Conversation-ID": f"conv-{request_id}"},
    )
    assert response.status_code == 200, response.text
    gateway_spans: list[Any] = []
    for _ in range(100):
        gateway_spans = [
            span
            for service, span in mesh.collector.spans
            if service == "llm-mesh-gateway" and span.name.startswith("POST /v1/chat/completions")
        ]
        if gateway_spans:
            break
        await asyncio.sleep(0.1)
    assert gateway_spans, "the gateway exported its request span"
    trace_id = gateway_spans[-1].trace_id
    want = {
        ("llm-mesh-gateway", "llmmesh.orchestrator.v1.OrchestratorService/RunGeneration"),
        ("llm-mesh-orchestrator", "llmmesh.orchestrator.v1.OrchestratorService/RunGeneration"),
        ("llm-mesh-orchestrator", "llmmesh.store.v1.StoreService/GetConversation"),
        ("llm-mesh-store", "llmmesh.store.v1.StoreService/GetConversation"),
        ("llm-mesh-orchestrator", "llmmesh.inference.v1.InferenceService/Generate"),
        ("llm-mesh-inference", "llmmesh.inference.v1.InferenceService/Generate"),
        ("llm-mesh-store", "llmmesh.store.v1.StoreService/AppendConversation"),
    }
    for _ in range(100):
        spans = mesh.collector.of_trace(trace_id)
        if want <= {(service, span.name) for service, span in spans}:
            break
        await asyncio.sleep(0.1)
    spans = mesh.collector.of_trace(trace_id)
    assert want <= {(service, span.name) for service, span in spans}, sorted((s, x.name) for s, x in spans)
    # Each server span's parent is the caller's client span for the same method, one hop up.
    by_id = {span.span_id: (service, span) for service, span in spans}
    for service, span in spans:
        if span.kind == span.SPAN_KIND_SERVER and service != "llm-mesh-gateway":
            parent_service, parent = by_id[span.parent_span_id]
            assert parent.kind == parent.SPAN_KIND_CLIENT and parent.name == span.name
            assert parent_service != service
    # The orchestrator's log lines of this request carry its request id and the trace id.
    lines = [
        json.loads(line)
        for line in (mesh.logs / "orchestrator.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert mine, "the orchestrator logged the request"
    assert {line.get("trace_id") for line in mine} == {trace_id.hex()}

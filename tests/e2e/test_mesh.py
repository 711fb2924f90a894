"""End to end: the four services as separate processes on free ports, the real Gemma 3 270M model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.inference.backends.base import Message
from services.inference.templates import render_gemma
from tests.support.http import sse_events
from tests.support.mesh import POSTGRES_URL_ENV, fresh_postgres_database
from tests.support.processes import mesh_env, tail, wait_ready

pytestmark = pytest.mark.e2e

URL = "/api/v1/ai/generate"
HAIKU = "Write a haiku about the sea"
BATCHED = "gemma-3-270m-batched"
# The packaged model twice: in the xllamacpp engine's deterministic mode (one request at a time, every
# prompt from an empty cache: the greedy text llama-cpp-python gives in-process), and batched (four
# slots, prefix reuse), the default for a model entry.
REGISTRY = f"""
models:
  gemma-3-270m: {{backend: llama_cpp, deterministic: true}}
  {BATCHED}: {{backend: llama_cpp, slots: 4}}
routes:
  default:
    - model: gemma-3-270m
"""


class MeshUrl(str):
    """The gateway's base URL, knowing where the inference service serves its metrics."""

    inference_metrics: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshUrl]:
    """Base URL of a gateway in front of a mesh started as four `llm-mesh serve` processes."""
    import asyncio

    tmp = tmp_path_factory.mktemp("mesh")
    postgres = None
    if request.param == "sqlite":
        database_url = f"sqlite+aiosqlite:///{tmp / 'store.db'}"
    else:
        server_url = os.environ.get(POSTGRES_URL_ENV)
        if not server_url:
            pytest.skip(f"PostgreSQL not configured: set {POSTGRES_URL_ENV} to run these tests on it")
        postgres = fresh_postgres_database(server_url)
        database_url = asyncio.run(postgres.__aenter__())
    env = mesh_env(tmp, database_url)
    (tmp / "models.yaml").write_text(REGISTRY)
    env["LLM_MESH_REGISTRY"] = str(tmp / "models.yaml")
    # A request that waits for another's 160 tokens on a busy 2-core machine can outlast the default
    # 60 s deadline; these tests are about waiting and answers, not deadlines (the clients allow 120 s).
    env["ORCHESTRATOR_GENERATION_TIMEOUT_S"] = "110"
    processes = []
    for name in ("store", "inference", "orchestrator", "gateway"):
        log = (tmp / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", name], env=env, stderr=log, stdout=log
            )
        )
    base_url = MeshUrl(f"http://127.0.0.1:{env['GATEWAY_PORT']}")
    base_url.inference_metrics = f"http://127.0.0.1:{env['INFERENCE_METRICS_PORT']}/metrics"
    try:
        wait_ready(base_url, processes, tmp)
        yield base_url
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
        if postgres is not None:
            asyncio.run(postgres.__aexit__())
    assert codes == [0, 0, 0, 0], f"every service stops cleanly on SIGTERM:\n{tail(tmp)}"


@pytest.fixture(scope="module")
def in_process_greedy(model_path: Path) -> Any:
    """llama.cpp's engine (xllamacpp) called directly, greedy, with the mesh's sampling defaults and
    an empty cache per prompt: the reference output. (llama-cpp-python's own build of llama.cpp
    computes other floating-point sums, and its greedy text differs after a few tokens.)"""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = 4096
    params.port = 0
    params.hostnames = ["127.0.0.1"]
    params.verbosity = -1
    server = xllamacpp.Server(params)
    prompt = "".join(text for text, _ in render_gemma([Message("user", HAIKU)]))

    def complete(max_tokens: int) -> str:
        out = server.handle_completions(
            {
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "repeat_penalty": 1.1,
                "cache_prompt": False,
            }
        )
        return str(out["choices"][0]["text"])

    yield complete


def test_generate_returns_real_model_text(mesh: str, in_process_greedy: Any) -> None:
    response = httpx.post(
        f"{mesh}{URL}", json={"prompt": HAIKU, "max_tokens": 24, "temperature": 0}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gemma-3-270m"
    assert body["tokens"] == body["usage"]["completion_tokens"] <= 24
    assert body["usage"]["prompt_tokens"] > 5
    assert body["text"].strip()
    # The very text llama.cpp produces in-process for the same prompt: no canned answer.
    assert body["text"] == in_process_greedy(24)


def test_stream_delivers_the_same_text_in_pieces(mesh: str) -> None:
    request = {"prompt": HAIKU, "max_tokens": 24, "temperature": 0}
    whole = httpx.post(f"{mesh}{URL}", json=request, timeout=60).json()
    with httpx.stream("POST", f"{mesh}{URL}", json={**request, "stream": True}, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    kind, done = events[-1]
    assert kind == "done"
    assert "".join(deltas) == whole["text"]
    # Tokens that come within the stream interval travel together, but never the whole text at once.
    assert 1 < len(deltas) <= done["tokens"], "deltas arrive as the model generates, not in one lump"
    assert done["tokens"] == whole["tokens"]
    assert done["finish_reason"] == whole["finish_reason"]


def test_bad_input_through_the_real_mesh(mesh: str) -> None:
    response = httpx.post(f"{mesh}{URL}", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    response = httpx.post(f"{mesh}{URL}", json={"prompt": "word " * 5000, "max_tokens": 8})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "prompt_too_long"


def test_llm_mesh_up_starts_the_mesh_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = mesh_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    gateway_port = env["GATEWAY_PORT"]
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", gateway_port],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "up.log").open("wb"),
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{gateway_port}" in banner, (tmp_path / "up.log").read_text()
        response = httpx.post(
            f"http://127.0.0.1:{gateway_port}{URL}", json={"prompt": HAIKU, "max_tokens": 4}, timeout=60
        )
        assert response.status_code == 200
        assert response.json()["tokens"] == 4
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    log = (tmp_path / "up.log").read_text()
    assert code == 0, log
    assert "llm-mesh: stopped" in log
    for name in ("store", "inference", "orchestrator", "gateway"):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(env[f"{name.upper()}_PORT"])), timeout=1).close()


def test_session_run_on_the_real_model_is_generated_once_then_cached(mesh: str) -> None:
    api = f"{mesh}/api/v1"
    name = f"e2e-{os.getpid()}"
    assert httpx.post(f"{api}/templates", json={"name": name}).status_code == 201
    version = httpx.post(
        f"{api}/templates/{name}/versions",
        json={
            "system_prompt": "Answer in one short sentence.",
            "llm_options": {"model": "gemma-3-270m", "max_tokens": 16, "temperature": 0},
            "options": [{"key": "sea", "label": "The sea"}, {"key": "sky", "label": "The sky"}],
        },
    ).json()
    assert httpx.post(f"{api}/templates/{name}/versions/{version['number']}/publish").status_code == 200
    code = httpx.post(f"{api}/sessions", json={"template": name}).json()["session_code"]
    answers = {"answers": [{"option": "sea", "value": "calm"}]}
    assert httpx.put(f"{api}/sessions/{code}/answers", json=answers).status_code == 200

    first = httpx.post(f"{api}/sessions/{code}/llm", timeout=60)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["cached"] is False
    assert body["llm_result"].strip()
    assert body["model"] == "gemma-3-270m"
    assert 0 < body["usage"]["completion_tokens"] <= 16
    assert body["messages"][1] == {"role": "user", "content": "- The sea: calm"}
    second = httpx.post(f"{api}/sessions/{code}/llm", timeout=60).json()
    assert second == {**body, "cached": True}


def test_openai_sdk_against_the_real_model(mesh: str, in_process_greedy: Any) -> None:
    import openai

    with openai.OpenAI(base_url=f"{mesh}/v1", api_key="unused", max_retries=0) as client:
        messages: Any = [{"role": "user", "content": HAIKU}]
        whole = client.chat.completions.create(
            model="gemma-3-270m", messages=messages, max_tokens=24, temperature=0
        )
        stream = client.chat.completions.create(
            model="gemma-3-270m", messages=messages, max_tokens=24, temperature=0, stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        with pytest.raises(openai.BadRequestError) as too_long:
            client.chat.completions.create(
                model="gemma-3-270m", messages=[{"role": "user", "content": "word " * 5000}], max_tokens=8
            )
    # The text llama.cpp produces in-process for the same turn, streamed in pieces too.
    assert whole.choices[0].message.content == in_process_greedy(24)
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([p for p in pieces if p]) > 1
    assert whole.usage is not None and whole.usage.completion_tokens == 24
    assert "accepts at most 4095 prompt tokens" in too_long.value.message


def test_responses_api_chains_on_the_real_model(mesh: str) -> None:
    """A response continued with previous_response_id is the very chat completion of the whole
    conversation (greedy), and a streamed response's deltas are its text."""
    import openai

    settings: Any = {"model": "gemma-3-270m", "max_output_tokens": 16, "temperature": 0}
    with openai.OpenAI(base_url=f"{mesh}/v1", api_key="unused", max_retries=0) as client:
        first = client.responses.create(input="My name is Ada. Say hello.", **settings)
        second = client.responses.create(input="What is my name?", previous_response_id=first.id, **settings)
        chat = client.chat.completions.create(
            model="gemma-3-270m",
            messages=[
                {"role": "user", "content": "My name is Ada. Say hello."},
                {"role": "assistant", "content": first.output_text},
                {"role": "user", "content": "What is my name?"},
            ],
            max_tokens=16,
            temperature=0,
        )
        events = list(client.responses.create(input=HAIKU, stream=True, **settings))
        whole = client.responses.create(input=HAIKU, **settings)
        stored = client.responses.retrieve(second.id)
    assert first.output_text.strip() and first.usage is not None and second.usage is not None
    assert second.output_text == chat.choices[0].message.content
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert "".join(deltas) == events[-1].response.output_text == whole.output_text  # type: ignore[union-attr]
    assert len(deltas) > 1
    assert (stored.output_text, stored.previous_response_id) == (second.output_text, first.id)


def pool_gauges(mesh: MeshUrl, model: str) -> tuple[float, float]:
    """vllm:num_requests_running and vllm:num_requests_waiting of `model` on the inference pool."""
    families = text_string_to_metric_families(httpx.get(mesh.inference_metrics, timeout=5).text)
    values = {
        sample.name: sample.value
        for family in families
        for sample in family.samples
        if sample.labels.get("model_name") == model
    }
    return values["vllm:num_requests_running"], values["vllm:num_requests_waiting"]


def test_a_second_request_waits_for_the_model_and_the_pool_gauges_say_so(mesh: MeshUrl) -> None:
    """A deterministic llama.cpp model serves one request at a time: while one generates, the next
    waits, and the gauges the Gateway API Inference Extension reads show exactly that."""

    def gauges() -> tuple[float, float]:
        return pool_gauges(mesh, "gemma-3-270m")

    assert gauges() == (0, 0)
    counting = {"model": "gemma-3-270m", "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 160, "temperature": 0}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{mesh}/v1/completions", json=counting, timeout=120)
        time.sleep(0.3)
        second = pool.submit(httpx.post, f"{mesh}/v1/completions", json=counting, timeout=120)
        seen = set()
        while not second.done():
            seen.add(gauges())
            time.sleep(0.05)
        assert first.result().status_code == second.result().status_code == 200
    assert (1, 1) in seen, f"one running and one waiting at some point: {sorted(seen)}"
    assert max(running for running, _ in seen) == 1, "never two at once on one llama.cpp context"
    assert gauges() == (0, 0)


def test_a_batched_model_runs_requests_together_and_reuses_a_shared_prefix(mesh: MeshUrl) -> None:
    """With slots, two requests decode at once (the gauges show both running, none waiting), and a
    prompt that starts like one already in a slot reports the reused tokens as cached, in our usage
    and in OpenAI's."""
    import openai

    counting = {"model": BATCHED, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 120, "temperature": 0}
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(httpx.post, f"{mesh}/v1/completions", json=counting, timeout=120) for _ in "ab"]
        seen = set()
        while not all(call.done() for call in calls):
            seen.add(pool_gauges(mesh, BATCHED))
            time.sleep(0.05)
        assert [call.result().status_code for call in calls] == [200, 200]
    assert (2, 0) in seen, f"both running at once at some point: {sorted(seen)}"
    assert pool_gauges(mesh, BATCHED) == (0, 0)

    system = "You answer for a shipping company with depots in Osaka, Rotterdam and Santos. Be brief."
    first = httpx.post(
        f"{mesh}{URL}",
        json={"model": BATCHED, "system": system, "prompt": "Where are the depots?", "max_tokens": 4},
        timeout=60,
    )
    assert first.status_code == 200, first.text
    with openai.OpenAI(base_url=f"{mesh}/v1", api_key="unused", max_retries=0) as client:
        second = client.chat.completions.create(
            model=BATCHED,
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": "How far is Santos?"},
            ],
            max_tokens=4,
        )
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert 20 <= cached < second.usage.prompt_tokens, second.usage
    again = httpx.post(
        f"{mesh}{URL}",
        json={"model": BATCHED, "system": system, "prompt": "Where are the depots?", "max_tokens": 4},
        timeout=60,
    ).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= 20

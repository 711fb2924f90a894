"""The Ollama API, driven by the official `ollama` Python client (and by raw HTTP for the NDJSON
framing), against one mesh for the whole module: the real Gemma 3 270M model (greedy, short), the
same weights as an embedding model, and a scripted model for the failures a real model cannot be
asked for. Auth is on: the client sends the mesh's API key as `Authorization: Bearer`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import ollama
import pytest
import pytest_asyncio

from tests.support.auth import ADMIN_TOKEN, create_key
from tests.support.mesh import GEMMA, Gateway, gemma_mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")

GREEDY = {"num_predict": 16, "temperature": 0, "seed": 1, "top_k": 40}  # top_k: accepted, ignored
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    database = tmp_path_factory.mktemp("ollama") / "s.db"
    settings = {"auth_enabled": True, "admin_token": ADMIN_TOKEN}
    async with gemma_mesh(
        f"sqlite+aiosqlite:///{database}", model_path, gateway_settings=settings
    ) as gateway:
        yield gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def key(mesh: Gateway) -> str:
    return await create_key(mesh)


@pytest_asyncio.fixture(loop_scope="module")
async def ask(mesh: Gateway, key: str) -> AsyncIterator[ollama.AsyncClient]:
    """The ollama client with the test's key, closed after the test (one left open is closed by the
    garbage collector on a loop that has ended, and logs that)."""
    async with ollama.AsyncClient(
        host=str(mesh.client.base_url), headers={"Authorization": f"Bearer {key}"}
    ) as sdk:
        yield sdk


async def test_chat_whole_and_streamed(mesh: Gateway, key: str, ask: ollama.AsyncClient) -> None:
    whole = await ask.chat(model=GEMMA, messages=QUESTION, options=GREEDY, stream=False)
    parts = [
        part async for part in await ask.chat(model=GEMMA, messages=QUESTION, options=GREEDY, stream=True)
    ]
    assert whole.done and whole.done_reason in ("stop", "length") and whole.model == GEMMA
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count is not None and 0 < whole.eval_count <= 16
    assert whole.prompt_eval_count is not None and whole.prompt_eval_count > 5
    assert whole.total_duration is not None and whole.total_duration > 0
    *pieces, last = parts
    assert len(pieces) > 1 and not any(p.done for p in pieces) and last.done
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert (last.done_reason, last.eval_count, last.prompt_eval_count) == (
        whole.done_reason,
        whole.eval_count,
        whole.prompt_eval_count,
    )


async def test_chat_reads_system_turns_stop_and_num_predict(
    mesh: Gateway, key: str, ask: ollama.AsyncClient
) -> None:
    turns = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    cut = await ask.chat(model=GEMMA, messages=turns, options={**GREEDY, "num_predict": 3}, stream=False)
    whole = await ask.chat(model=f"{GEMMA}:latest", messages=turns, options=GREEDY, stream=False)
    text = whole.message.content or ""
    stop = text.split()[len(text.split()) // 2]
    stopped = await ask.chat(model=GEMMA, messages=turns, options={**GREEDY, "stop": [stop]}, stream=False)
    assert (cut.done_reason, cut.eval_count) == ("length", 3)
    assert text.startswith(cut.message.content or "")
    assert whole.model == f"{GEMMA}:latest"  # the default tag names the registry's model
    assert stopped.done_reason == "stop" and stopped.message.content == text[: text.index(stop)]


async def test_generate_whole_streamed_with_system_and_raw(
    mesh: Gateway, key: str, ask: ollama.AsyncClient
) -> None:
    prompt = "Write a haiku about the sea"
    whole = await ask.generate(model=GEMMA, prompt=prompt, system="Be brief.", options=GREEDY, stream=False)
    streamed = await ask.generate(model=GEMMA, prompt=prompt, system="Be brief.", options=GREEDY, stream=True)
    parts = [p async for p in streamed]
    raw = await ask.generate(model=GEMMA, prompt="1, 2, 3, 4,", raw=True, options=GREEDY, stream=False)
    templated = await ask.generate(model=GEMMA, prompt="1, 2, 3, 4,", options=GREEDY, stream=False)
    assert whole.done and whole.response and whole.done_reason in ("stop", "length")
    assert "".join(p.response or "" for p in parts) == whole.response
    assert parts[-1].done and not parts[0].done
    # Raw: no turn template around the prompt, so fewer prompt tokens (and another continuation).
    assert raw.prompt_eval_count is not None and templated.prompt_eval_count is not None
    assert raw.prompt_eval_count < templated.prompt_eval_count
    assert raw.response


async def test_a_request_with_nothing_to_generate_only_checks_the_model(
    mesh: Gateway, key: str, ask: ollama.AsyncClient
) -> None:
    loaded = await ask.generate(model=GEMMA, prompt="", stream=False)
    chatted = await ask.chat(model="default", messages=[], stream=False)
    assert (loaded.done, loaded.done_reason, loaded.response) == (True, "load", "")
    assert (chatted.done_reason, chatted.message.content) == ("load", "")
    with pytest.raises(ollama.ResponseError) as unknown:
        await ask.generate(model="nope", prompt="", stream=False)
    assert unknown.value.status_code == 404


async def test_embed_and_the_older_embeddings(mesh: Gateway, key: str, ask: ollama.AsyncClient) -> None:
    embedded = await ask.embed(model="gemma-embed", input=["the sea is blue", "a cat sleeps"])
    one = await ask.embed(model="gemma-embed", input="the sea is blue")
    older = await ask.embeddings(model="gemma-embed", prompt="the sea is blue")
    first, second = embedded.embeddings
    assert len(first) == len(second) == 640 and first != second
    assert sum(v * v for v in first) == pytest.approx(1.0, abs=1e-4)
    # The same text alone, by both endpoints: the same vector (in a batch, llama.cpp's sums differ a little).
    assert list(older.embedding) == pytest.approx(one.embeddings[0], abs=1e-5)
    assert sum(a * b for a, b in zip(first, one.embeddings[0], strict=True)) > 0.999
    assert embedded.prompt_eval_count is not None and embedded.prompt_eval_count > 4
    with pytest.raises(ollama.ResponseError) as not_an_embedder:
        await ask.embed(model=GEMMA, input="x")
    assert not_an_embedder.value.status_code == 400


async def test_list_show_ps_and_version(mesh: Gateway, key: str, ask: ollama.AsyncClient) -> None:
    await ask.generate(model=GEMMA, prompt="Hi", options={"num_predict": 1}, stream=False)
    listed = await ask.list()
    shown = await ask.show(GEMMA)
    embedder = await ask.show("gemma-embed")
    route = await ask.show("default")
    running = await ask.ps()
    by_name = {m.model: m for m in listed.models}
    assert set(by_name) == {"scripted", GEMMA, "gemma-embed", "default"}
    assert by_name[GEMMA].details is not None and by_name[GEMMA].details.format == "llama_cpp"
    assert by_name["default"].details is not None and by_name["default"].details.format == "route"
    assert shown.capabilities == ["completion"] and embedder.capabilities == ["embedding"]
    assert shown.modelinfo is not None and shown.modelinfo["llama_cpp.context_length"] == 1024
    assert route.modelinfo is not None and route.modelinfo["llm_mesh.route_tiers"] == [
        "canned:greetings",
        f"model:{GEMMA}",
    ]
    assert GEMMA in {m.model for m in running.models}
    version = await mesh.client.get("/api/version", headers={"Authorization": f"Bearer {key}"})
    assert version.json() == {"version": "0.1.0"}  # the Python client has no call for it


async def test_errors_are_ollama_shaped(mesh: Gateway, key: str, ask: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as unknown:
        await ask.chat(model="nope", messages=QUESTION, stream=False)
    with pytest.raises(ollama.ResponseError) as unknown_streamed:
        async for _ in await ask.generate(model="nope", prompt="hi", stream=True):
            pass
    with pytest.raises(ollama.ResponseError) as unshown:
        await ask.show("nope")
    with pytest.raises(ollama.ResponseError) as refused:
        async with ollama.AsyncClient(host=str(mesh.client.base_url)) as keyless:
            await keyless.list()
    assert unknown.value.status_code == unknown_streamed.value.status_code == unshown.value.status_code == 404
    assert "nope" in unknown.value.error
    assert refused.value.status_code == 401
    raw = await mesh.client.post(
        "/api/show", json={"model": "nope"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert raw.status_code == 404
    assert raw.json() == {
        "error": raw.json()["error"],
        "code": "model_not_found",
        "request_id": raw.headers["x-request-id"],
    }
    bad = await mesh.client.post(
        "/api/generate",
        json={"model": GEMMA, "prompt": "x", "images": ["AA=="]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert bad.status_code == 400 and "images is not supported" in bad.json()["error"]


async def test_raw_ndjson_framing_streams_by_default(mesh: Gateway, key: str) -> None:
    body = {"model": GEMMA, "messages": QUESTION, "options": {"num_predict": 6, "temperature": 0}}
    # Labelled as a form, as `curl -d` sends it (Ollama's own examples do): read as JSON all the same.
    form = {"Authorization": f"Bearer {key}", "content-type": "application/x-www-form-urlencoded"}
    async with mesh.client.stream("POST", "/api/chat", content=json.dumps(body), headers=form) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        raw = "".join([part async for part in response.aiter_text()])
    assert raw.endswith("\n")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert all(line["model"] == GEMMA and line["created_at"].endswith("Z") for line in lines)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 6
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert all(line["message"]["content"] for line in lines[:-1])


async def test_a_failure_midway_ends_the_stream_with_an_error_line(
    mesh: Gateway, key: str, ask: ollama.AsyncClient
) -> None:
    body = {"model": "scripted", "messages": [{"role": "user", "content": "fail midway"}]}
    async with mesh.client.stream(
        "POST", "/api/chat", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status_code == 200
        lines = [json.loads(line) async for line in response.aiter_lines()]
    assert [line["message"]["content"] for line in lines[:-1]] == ["partial ", "output "]
    assert lines[-1]["code"] == "upstream_error" and lines[-1]["error"]
    assert lines[-1]["request_id"] == response.headers["x-request-id"]
    seen = []
    with pytest.raises(ollama.ResponseError):
        async for part in await ask.chat(model="scripted", messages=body["messages"], stream=True):
            seen.append(part.message.content)
    assert seen == ["partial ", "output "]


async def test_format_gives_json_and_a_schema_is_followed(
    mesh: Gateway, key: str, ask: ollama.AsyncClient
) -> None:
    """Ollama's structured outputs: format "json" and format as a JSON schema, enforced on the local model."""
    schema = {
        "type": "object",
        "properties": {
            "colours": {"type": "array", "items": {"enum": ["red", "orange", "yellow"]}, "maxItems": 3}
        },
        "required": ["colours"],
    }
    as_json = await ask.chat(
        model=GEMMA, messages=QUESTION, format="json", options={**GREEDY, "num_predict": 60}
    )
    shaped = await ask.generate(
        model=GEMMA, prompt="Three colours:", format=schema, options={**GREEDY, "num_predict": 60}
    )
    if as_json.done_reason == "stop":
        assert isinstance(json.loads(as_json.message.content or ""), dict)
    assert shaped.done_reason == "stop", shaped.response
    assert set(json.loads(shaped.response)["colours"]) <= {"red", "orange", "yellow"}

"""Knowledge bases through the whole mesh, on SQLite and on PostgreSQL with pgvector: files and vector
stores through the openai SDK (create_and_poll included), the mesh's own /api/v1/knowledge, and
generations grounded in them. Embeddings come from the real default embedder (all-MiniLM-L6-v2);
generations from the scripted backend, which records the prompt it was given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from services.common.registry import DEFAULT_EMBEDDING_MODEL, parse_registry
from services.inference.backends import create_backend
from services.inference.config import InferenceSettings
from tests.support.fakes import ScriptedBackend, ScriptedEmbedder
from tests.support.http import assert_error
from tests.support.mesh import Gateway, scripted_mesh
from tests.support.openai_schema import conforms
from tests.support.pdf import pdf_with_text
from tests.support.sessions import ANSWERS, LLM_OPTIONS, SYSTEM, make_session, make_version

pytest.importorskip("tokenizers", reason="the default embedder needs tokenizers (a base dependency)")

DOCUMENTS = {
    "returns.md": "# Returns\n\nItems can be returned within 30 days of delivery for a full refund. "
    "The receipt is required.",
    "shipping.md": "# Shipping\n\nOrders ship from our warehouse in Osaka within two business days.",
    "hours.md": "# Opening hours\n\nThe shop opens at 9 am and closes at 6 pm, Monday to Saturday.",
    "japanese.md": "# 返品について\n\n商品はお届けから30日以内であれば返品できます。レシートが必要です。",
}


@pytest.fixture
async def mesh(knowledge_database_url: str) -> AsyncIterator[Gateway]:
    registry = parse_registry(
        {
            "models": {
                "scripted": {"backend": "tests.support.fakes:ScriptedBackend"},
                DEFAULT_EMBEDDING_MODEL: {"backend": "sentence_encoder"},
            }
        }
    )
    embedder = create_backend(
        DEFAULT_EMBEDDING_MODEL, registry.models[DEFAULT_EMBEDDING_MODEL], InferenceSettings()
    )
    async with scripted_mesh(
        knowledge_database_url,
        registry=registry,
        backends=[ScriptedBackend()],
        models=[embedder],
        generation_timeout_s=30,
        gateway_settings={"max_upload_bytes": 4096},
    ) as gateway:
        yield gateway


@pytest.fixture
async def client(mesh: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    """The openai SDK on the mesh, closed after the test (a client left open is closed by the garbage
    collector on a loop that has ended, and logs that)."""
    async with openai.AsyncOpenAI(
        base_url=f"{mesh.client.base_url}/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


async def store_with_documents(client: openai.AsyncOpenAI) -> Any:
    store = await client.vector_stores.create(name="help center", metadata={"team": "support"})
    for name, text in DOCUMENTS.items():
        uploaded = await client.files.create(
            file=(name, text.encode(), "text/markdown"), purpose="assistants"
        )
        attached = await client.vector_stores.files.create_and_poll(
            vector_store_id=store.id, file_id=uploaded.id, attributes={"name": name}
        )
        assert attached.status == "completed", attached.last_error
    return store


async def test_files_round_trip_through_the_openai_sdk(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    created = await client.files.create(file=("notes.txt", b"some notes", "text/plain"), purpose="user_data")
    assert (created.filename, created.bytes, created.purpose) == ("notes.txt", 10, "user_data")
    assert [f.id for f in (await client.files.list(purpose="user_data")).data] == [created.id]
    assert (await client.files.retrieve(created.id)).filename == "notes.txt"
    assert (await client.files.content(created.id)).content == b"some notes"
    deleted = await client.files.delete(created.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)


async def test_a_pdf_is_read_indexed_and_found(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    store = await client.vector_stores.create(name="manuals")
    pdf = pdf_with_text("Warranty terms", "Repairs are free for two years, parts and labour included.")
    uploaded = await client.files.create(file=("warranty.pdf", pdf, "application/pdf"), purpose="assistants")
    attached = await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=uploaded.id)
    assert attached.status == "completed", attached.last_error
    page = await client.vector_stores.search(store.id, query="are repairs free", extra_body={"mode": "text"})
    assert page.data[0].filename == "warranty.pdf"
    assert "Repairs are free for two years" in page.data[0].content[0].text
    broken = await client.files.create(
        file=("broken.pdf", b"%PDF-1.4 nothing", "application/pdf"), purpose="assistants"
    )
    with pytest.raises(openai.BadRequestError) as refused:  # read at once: refused, not a failed file
        await client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=broken.id)
    assert "the PDF could not be read" in refused.value.message
    assert [f.id for f in (await client.vector_stores.files.list(store.id)).data] == [uploaded.id]


async def test_files_uploaded_and_attached_as_one_batch(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    """The SDK's upload_and_poll: each file uploaded, then one batch attached and polled until done."""
    store = await client.vector_stores.create(name="batched")
    files = [(name, text.encode(), "text/markdown") for name, text in DOCUMENTS.items()]
    batch = await client.vector_stores.file_batches.upload_and_poll(store.id, files=files)
    assert batch.status == "completed" and batch.id.startswith("vsfb_")
    counts = batch.file_counts
    assert (counts.completed, counts.total, counts.in_progress, counts.failed) == (
        len(files),
        len(files),
        0,
        0,
    )
    conforms("VectorStoreFileBatchObject", batch.model_dump(mode="json"))
    listed = await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert len(listed.data) == len(files) and {f.status for f in listed.data} == {"completed"}
    again = await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert again.model_dump() == batch.model_dump()
    page = await client.vector_stores.search(store.id, query="where do orders ship from")
    assert page.data[0].filename == "shipping.md"
    # Two files of the same text are one document, counted once.
    twins = [
        ("a.txt", b"Gift wrapping is free.", "text/plain"),
        ("b.txt", b"Gift wrapping is free.", "text/plain"),
    ]
    twin_batch = await client.vector_stores.file_batches.upload_and_poll(store.id, files=twins)
    assert (twin_batch.status, twin_batch.file_counts.completed, twin_batch.file_counts.total) == (
        "completed",
        1,
        1,
    )
    with pytest.raises(openai.NotFoundError):
        await client.vector_stores.file_batches.retrieve("vsfb_nope", vector_store_id=store.id)
    with pytest.raises(openai.BadRequestError) as both:
        await client.vector_stores.file_batches.create(
            store.id, file_ids=[listed.data[0].id], files=[{"file_id": listed.data[0].id}]
        )
    assert both.value.body["param"] == "file_ids"  # type: ignore[index]


async def test_cancelling_a_file_batch_stops_the_files_not_indexed_yet(knowledge_database_url: str) -> None:
    registry = parse_registry(
        {
            "models": {
                "scripted": {"backend": "tests.support.fakes:ScriptedBackend"},
                "scripted-embed": {"backend": "tests.support.fakes:ScriptedEmbedder", "task": "embed"},
            }
        }
    )
    backends = [ScriptedBackend(), ScriptedEmbedder("scripted-embed", registry.models["scripted-embed"])]
    # No job workers: the batch's files wait, queued, until the cancel.
    async with scripted_mesh(
        knowledge_database_url, registry=registry, backends=backends, job_concurrency=0
    ) as gateway:
        async with openai.AsyncOpenAI(base_url=f"{gateway.client.base_url}/v1", api_key="k") as client:
            store = await client.vector_stores.create(
                name="to cancel", extra_body={"embedding_model": "scripted-embed"}
            )
            uploaded = [
                await client.files.create(file=(name, text.encode(), "text/markdown"), purpose="assistants")
                for name, text in list(DOCUMENTS.items())[:2]
            ]
            batch = await client.vector_stores.file_batches.create(
                store.id, file_ids=[f.id for f in uploaded]
            )
            assert batch.status == "in_progress" and batch.file_counts.in_progress == 2
            cancelled = await client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
            files = await client.vector_stores.file_batches.list_files(
                batch.id, vector_store_id=store.id, filter="cancelled"
            )
        document = await gateway.client.get(f"/api/v1/knowledge/bases/{store.id}/documents/{uploaded[0].id}")
        job = await gateway.client.get(f"/api/v1/ai/status/{document.json()['job_id']}")
    assert cancelled.status == "cancelled"
    assert (
        cancelled.file_counts.cancelled,
        cancelled.file_counts.in_progress,
        cancelled.file_counts.total,
    ) == (2, 0, 2)
    assert [f.status for f in files.data] == ["cancelled", "cancelled"]
    assert job.json()["status"] == "CANCELLED", job.text


async def test_a_vector_store_is_searched_after_create_and_poll(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    store = await store_with_documents(client)
    got = await client.vector_stores.retrieve(store.id)
    assert got.file_counts.completed == len(DOCUMENTS) and got.status == "completed"
    assert got.metadata == {"team": "support"}
    page = await client.vector_stores.search(store.id, query="how long do I have to return an item?")
    assert page.data[0].filename == "returns.md"
    assert "30 days" in page.data[0].content[0].text
    assert page.data[0].attributes == {"name": "returns.md"}
    filtered = await client.vector_stores.search(
        store.id,
        query="when does the shop open",
        filters={"type": "eq", "key": "name", "value": "shipping.md"},
    )
    assert {r.filename for r in filtered.data} == {"shipping.md"}
    files = await client.vector_stores.files.list(store.id)
    assert len(files.data) == len(DOCUMENTS)
    assert all(f.id.startswith("file-") for f in files.data)
    other = await client.vector_stores.create(name="second")
    again = await client.vector_stores.files.create_and_poll(
        vector_store_id=other.id, file_id=files.data[0].id
    )
    assert (again.id, again.status) == (files.data[0].id, "completed"), "one file, two vector stores"
    assert [s.id for s in (await client.vector_stores.list()).data] == [other.id, store.id]
    removed = await client.vector_stores.files.delete(file_id=files.data[0].id, vector_store_id=store.id)
    assert removed.deleted
    assert (await client.vector_stores.delete(store.id)).deleted


async def test_japanese_queries_find_japanese_documents(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    store = await store_with_documents(client)
    answer = await mesh.client.post(
        "/api/v1/knowledge/search",
        json={"knowledge_bases": [store.id], "query": "返品できる期間", "mode": "text", "top_k": 3},
    )
    assert answer.status_code == 200, answer.text
    hits = answer.json()["hits"]
    assert hits[0]["title"] == "japanese.md" and "30日以内" in hits[0]["text"]
    hybrid = await client.vector_stores.search(store.id, query="返品できる期間")
    assert hybrid.data[0].filename == "japanese.md"


async def test_a_chat_completion_is_grounded_in_the_knowledge_base_with_sources(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    store = await store_with_documents(client)
    completion = await client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "Can I return an item after three weeks?"}],
        extra_body={"knowledge_bases": [store.id], "knowledge_top_k": 2},
    )
    sources = completion.model_extra["sources"]
    assert sources[0]["title"] == "returns.md"
    received = mesh.backend.calls[-1].request.messages
    system = received[0].content
    assert received[0].role == "system" and "[1] returns.md" in system
    assert "within 30 days of delivery for a full refund" in system
    assert received[-1].content == "Can I return an item after three weeks?"


async def test_the_mesh_api_adds_text_documents_idempotently_and_reports_progress(mesh: Gateway) -> None:
    created = await mesh.client.post("/api/v1/knowledge/bases", json={"name": "faq", "chunk_size": 200})
    assert created.status_code == 201, created.text
    base = created.json()
    assert base["embedding_model"] == DEFAULT_EMBEDDING_MODEL
    text = "The warranty lasts two years. " * 20
    first = await mesh.client.post(
        f"/api/v1/knowledge/bases/{base['id']}/documents", json={"text": text, "metadata": {"kind": "policy"}}
    )
    again = await mesh.client.post(f"/api/v1/knowledge/bases/{base['id']}/documents", json={"text": text})
    assert first.status_code == again.status_code == 202
    assert first.json()["created"] and not again.json()["created"]
    assert again.json()["document_id"] == first.json()["document_id"]
    document = await wait_indexed(mesh, base["id"], first.json()["document_id"])
    assert document["chunk_count"] == document["chunks_written"] > 1
    # The document shows as indexed a moment before its worker records the job's success.
    for _ in range(100):
        job = await mesh.client.get(f"/api/v1/ai/status/{first.json()['job_id']}")
        assert job.status_code == 200, job.text
        if job.json()["status"] != "RUNNING":
            break
        await asyncio.sleep(0.1)
    assert job.json()["status"] == "SUCCEEDED"
    assert job.json()["progress"] == {
        "done": document["chunk_count"],
        "total": document["chunk_count"],
        "unit": "chunks",
    }


async def wait_indexed(mesh: Gateway, base_id: str, document_id: str) -> dict[str, Any]:
    for _ in range(300):
        answer = await mesh.client.get(f"/api/v1/knowledge/bases/{base_id}/documents/{document_id}")
        document: dict[str, Any] = answer.json()
        if document["status"] in ("completed", "failed"):
            return document
        await asyncio.sleep(0.1)
    raise AssertionError(f"document {document_id} was not indexed: {document}")


async def test_bad_input_gets_its_own_status(mesh: Gateway, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as large:
        await client.files.create(file=("big.txt", b"x" * 5000, "text/plain"), purpose="assistants")
    assert large.value.status_code == 413 and "4096 bytes" in large.value.message
    picture = await client.files.create(file=("photo.png", b"\x89PNG....", "image/png"), purpose="assistants")
    store = await client.vector_stores.create(name="pictures")
    with pytest.raises(openai.APIStatusError) as unsupported:
        await client.vector_stores.files.create(vector_store_id=store.id, file_id=picture.id)
    assert unsupported.value.status_code == 415
    with pytest.raises(openai.BadRequestError) as generating:
        await client.vector_stores.create(name="wrong", extra_body={"embedding_model": "scripted"})
    assert "makes no embeddings" in generating.value.message
    answer = await mesh.client.post("/api/v1/knowledge/bases", json={"embedding_model": "scripted"})
    assert_error(answer, 400, "not_an_embedding_model")


async def test_a_response_with_the_file_search_tool_cites_its_sources(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    store = await store_with_documents(client)
    tools = [{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 2}]
    asked = "Where do orders ship from?"
    response = await client.responses.create(
        model="scripted", input=asked, tools=tools, include=["file_search_call.results"]
    )
    search, message = response.output
    assert search.type == "file_search_call" and search.status == "completed" and search.queries == [asked]
    assert search.results and search.results[0].filename == "shipping.md"
    assert "warehouse in Osaka" in search.results[0].text and 0 <= search.results[0].score <= 1
    annotations = message.content[0].annotations  # type: ignore[union-attr]
    assert annotations[0].type == "file_citation" and annotations[0].filename == "shipping.md"
    received = mesh.backend.calls[-1].request.messages
    assert "[1] shipping.md" in received[0].content and "warehouse in Osaka" in received[0].content
    conforms("Response", response.model_dump(mode="json", by_alias=True, exclude_unset=True))
    # Streamed: the search item first (output 0), its results only when included.
    kinds = []
    async with client.responses.stream(model="scripted", input=asked, tools=tools) as stream:  # type: ignore[arg-type]
        async for event in stream:
            kinds.append(event.type)
            if event.type.startswith("response.file_search_call."):
                conforms(
                    {"in_progress": "ResponseFileSearchCallInProgressEvent", "searching": "ResponseFileSearchCallSearchingEvent", "completed": "ResponseFileSearchCallCompletedEvent"}[event.type.rpartition(".")[2]],
                    event.model_dump(mode="json"),
                )  # fmt: skip
        final = await stream.get_final_response()
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
    ]
    assert "response.file_search_call.completed" in kinds
    assert final.output[0].type == "file_search_call" and final.output[0].results is None  # type: ignore[union-attr]
    assert final.output[1].type == "message"


async def test_changing_the_model_re_embeds_and_searches_never_mix_models(
    knowledge_database_url: str,
) -> None:
    registry = parse_registry(
        {
            "models": {
                "scripted": {"backend": "tests.support.fakes:ScriptedBackend"},
                DEFAULT_EMBEDDING_MODEL: {"backend": "sentence_encoder"},
                "other-embed": {"backend": "tests.support.fakes:ScriptedEmbedder", "task": "embed"},
            }
        }
    )
    embedder = create_backend(
        DEFAULT_EMBEDDING_MODEL, registry.models[DEFAULT_EMBEDDING_MODEL], InferenceSettings()
    )
    async with scripted_mesh(
        knowledge_database_url,
        registry=registry,
        backends=[ScriptedBackend(), ScriptedEmbedder("other-embed", registry.models["other-embed"])],
        models=[embedder],
        generation_timeout_s=30,
    ) as mesh:
        base = (await mesh.client.post("/api/v1/knowledge/bases", json={"name": "kb"})).json()
        added = await mesh.client.post(
            f"/api/v1/knowledge/bases/{base['id']}/documents", json={"text": DOCUMENTS["returns.md"]}
        )
        await wait_indexed(mesh, base["id"], added.json()["document_id"])
        changed = await mesh.client.patch(
            f"/api/v1/knowledge/bases/{base['id']}", json={"embedding_model": "other-embed"}
        )
        assert changed.status_code == 200, changed.text
        assert len(changed.json()["job_ids"]) == 1
        for _ in range(300):
            got = (await mesh.client.get(f"/api/v1/knowledge/bases/{base['id']}")).json()
            if got["serving_model"] == "other-embed":
                break
            await asyncio.sleep(0.1)
        assert (got["serving_model"], got["serving_generation"], got["documents"]["completed"]) == (
            "other-embed",
            2,
            1,
        )
        # The query is embedded by the serving model: 4 dimensions now, and the 384-dimension
        # vectors of the old model are gone.
        hits = await mesh.client.post(
            "/api/v1/knowledge/search",
            json={"knowledge_bases": [base["id"]], "query": "refund", "mode": "vector"},
        )
        assert hits.status_code == 200, hits.text
        assert [h["title"] for h in hits.json()["hits"]] == ["document"]
        bad = await mesh.client.patch(
            f"/api/v1/knowledge/bases/{base['id']}", json={"embedding_model": "scripted"}
        )
        assert_error(bad, 400, "not_an_embedding_model")


async def test_a_session_template_version_retrieves_from_its_knowledge_bases(mesh: Gateway) -> None:
    base = (await mesh.client.post("/api/v1/knowledge/bases", json={"name": "clinic"})).json()
    added = await mesh.client.post(
        f"/api/v1/knowledge/bases/{base['id']}/documents",
        json={
            "text": "A fever above 39 C with a cough for three days needs a doctor's visit.",
            "title": "fever.md",
        },
    )
    await wait_indexed(mesh, base["id"], added.json()["document_id"])
    version = await make_version(mesh, llm_options={**LLM_OPTIONS, "knowledge_bases": [base["id"]]})
    assert version["llm_options"]["knowledge_bases"] == [base["id"]]
    code = await make_session(mesh, ANSWERS)
    run = await mesh.client.post(f"/api/v1/sessions/{code}/llm")
    assert run.status_code == 200, run.text
    system = mesh.backend.calls[-1].request.messages[0].content
    assert system.startswith(SYSTEM) and "[1] fever.md" in system and "needs a doctor's visit" in system
    assert run.json()["messages"][0]["content"] == system  # the messages sent, sources included
    generated = len(mesh.backend.calls)
    # the same run again reuses the result, as long as the knowledge base gives the same chunks
    again = await mesh.client.post(f"/api/v1/sessions/{code}/llm")
    assert again.json()["cached"] is True and len(mesh.backend.calls) == generated
    # its documents changed: the run retrieves other chunks, so its stored result is not reused
    updated = await mesh.client.post(
        f"/api/v1/knowledge/bases/{base['id']}/documents",
        json={"text": "A fever above 38.5 C for two days needs a doctor's visit.", "title": "fever-2.md"},
    )
    await wait_indexed(mesh, base["id"], updated.json()["document_id"])
    removed = await mesh.client.delete(
        f"/api/v1/knowledge/bases/{base['id']}/documents/{added.json()['document_id']}"
    )
    assert removed.status_code == 204
    fresh = await mesh.client.post(f"/api/v1/sessions/{code}/llm")
    assert fresh.status_code == 200 and fresh.json()["cached"] is False
    system = mesh.backend.calls[-1].request.messages[0].content
    assert "[1] fever-2.md" in system and "39 C" not in system
    assert fresh.json()["messages"][0]["content"] == system
    in_use = await mesh.client.delete(f"/api/v1/knowledge/bases/{base['id']}")
    assert_error(in_use, 409, "knowledge_base_in_use")
    assert "triage v1" in in_use.json()["error"]["message"]
    forced = await mesh.client.delete(f"/api/v1/knowledge/bases/{base['id']}", params={"force": "true"})
    assert forced.status_code == 204


async def test_a_streamed_grounded_chat_sends_its_sources_with_the_last_chunk(
    mesh: Gateway, client: openai.AsyncOpenAI
) -> None:
    store = await store_with_documents(client)
    stream = await client.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": "When does the shop open?"}],
        extra_body={"knowledge_bases": [store.id], "knowledge_top_k": 1},
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert [s["title"] for s in last.model_extra["sources"]] == ["hours.md"]
    assert all("sources" not in (c.model_extra or {}) for c in chunks[:-1])

"""Files, knowledge bases, documents, chunks and search in the store over gRPC, on SQLite and on
PostgreSQL with pgvector (a pgserver of the test session's own): vectors are given here (the
orchestrator's job embeds them; tests/orchestrator/test_knowledge.py runs that with the real model)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import grpc
import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from services.common.tenancy import METADATA_KEY
from services.store.config import StoreSettings
from services.store.knowledge import fuse, matches, terms
from services.store.server import create_server as create_store
from tests.support.mesh import channel_to, error_code, running

BETA = ((METADATA_KEY, "beta"),)
VECTOR = common_pb2.KNOWLEDGE_SEARCH_MODE_VECTOR
TEXT = common_pb2.KNOWLEDGE_SEARCH_MODE_TEXT
HYBRID = common_pb2.KNOWLEDGE_SEARCH_MODE_HYBRID


@pytest.fixture
async def store(knowledge_database_url: str) -> AsyncIterator[store_pb2_grpc.StoreServiceStub]:
    server, port = create_store(StoreSettings(port=0, database_url=knowledge_database_url))
    async with running(server), channel_to(port) as channel:
        yield store_pb2_grpc.StoreServiceStub(channel)


def unit(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


async def new_base(store: store_pb2_grpc.StoreServiceStub, model: str = "m1") -> store_pb2.KnowledgeBase:
    answer = await store.CreateKnowledgeBase(
        store_pb2.CreateKnowledgeBaseRequest(name="docs", embedding_model=model, chunk_size=200)
    )
    return answer.knowledge_base


async def indexed(
    store: store_pb2_grpc.StoreServiceStub,
    base: store_pb2.KnowledgeBase,
    chunks: list[tuple[str, list[float]]],
    metadata: dict[str, object] | None = None,
    finish: bool = True,
    generation: int = 1,
) -> store_pb2.KbDocument:
    """A document of the given chunks (text, vector), written and, unless finish is False, shown."""
    added = await store.AddDocument(
        store_pb2.AddDocumentRequest(
            knowledge_base_id=base.id,
            title=chunks[0][0][:20],
            text="\n\n".join(text for text, _ in chunks),
            metadata_json=json.dumps(metadata or {}),
        )
    )
    document = added.document
    offset, new = 0, []
    for position, (text, vector) in enumerate(chunks):
        new.append(
            store_pb2.NewChunk(
                position=position, text=text, start=offset, end=offset + len(text), embedding=vector
            )
        )
        offset += len(text) + 2
    written = await store.PutChunks(
        store_pb2.PutChunksRequest(
            document_id=document.id, generation=generation, chunks=new, chunk_total=len(new)
        )
    )
    assert written.chunks_written == len(new)
    if finish:
        finished = await store.FinishDocument(
            store_pb2.FinishDocumentRequest(
                document_id=document.id, generation=generation, chunk_count=len(new)
            )
        )
        return finished.document
    return document


async def search(
    store: store_pb2_grpc.StoreServiceStub,
    base: store_pb2.KnowledgeBase,
    mode: common_pb2.KnowledgeSearchMode,
    vector: list[float] | None = None,
    query: str = "",
    model: str = "m1",
    top_k: int = 5,
    filter_: dict[str, object] | None = None,
    exact: bool = False,
) -> list[str]:
    answer = await store.SearchChunks(
        store_pb2.SearchChunksRequest(
            knowledge_base_ids=[base.id],
            embedding_model=model,
            query_vector=vector or [],
            query_text=query,
            mode=mode,
            top_k=top_k,
            filter_json=json.dumps(filter_) if filter_ else "",
            exact=exact,
        )
    )
    return [hit.text for hit in answer.hits]


def test_terms_are_words_and_bigrams_of_japanese_runs() -> None:
    assert terms("Hello, World! 42") == ["hello", "world", "42"]
    assert terms("How do I get to the shop?") == ["get", "shop"]
    assert terms("全文検索です") == ["全文", "文検", "検索", "索で", "です"]
    # full-width letters fold to ASCII (NFKC)
    assert terms("\uff21\uff22\uff23 と 猫") == ["abc", "と", "猫"]


def test_score_fusion_rewards_what_both_rankings_hold_and_weighs_their_scores() -> None:
    vector, text = [(1, 0.9), (3, 0.8), (4, 0.1)], [(2, 12.0), (3, 6.0), (5, 0.5)]
    fused = fuse([(vector, 0.75), (text, 0.25)])
    assert [item for item, _ in fused][:3] == [3, 1, 2]
    assert fused[0][1] == pytest.approx(0.75 * 0.8 / 0.9 + 0.25 * 6.0 / 12.0)
    # a weak text match cannot lift a chunk over the vector ranking's best
    assert dict(fused)[5] < dict(fused)[1]
    # scores below zero (cosine) count nothing; an empty ranking adds nothing
    assert fuse([([(7, -0.2), (8, 0.4)], 1.0), ([], 1.0)]) == [(8, 1.0), (7, 0.0)]


def test_attribute_filters() -> None:
    attributes = {"lang": "ja", "year": 2024}
    assert matches({"type": "eq", "key": "lang", "value": "ja"}, attributes)
    assert not matches({"type": "gt", "key": "year", "value": 2024}, attributes)
    assert matches(
        {
            "type": "and",
            "filters": [
                {"type": "gte", "key": "year", "value": 2024},
                {"type": "in", "key": "lang", "value": ["ja", "en"]},
            ],
        },
        attributes,
    )
    assert matches({"type": "ne", "key": "missing", "value": 1}, attributes)
    assert not matches({"type": "eq", "key": "year", "value": "2024"}, attributes)


async def test_files_are_kept_per_project(store: store_pb2_grpc.StoreServiceStub) -> None:
    created = (
        await store.CreateFile(
            store_pb2.CreateFileRequest(
                filename="notes.md", purpose="assistants", content_type="text/markdown", content=b"# Notes\n"
            )
        )
    ).file
    assert created.id.startswith("file-") and created.bytes == 8 and len(created.sha256) == 64
    await store.CreateFile(store_pb2.CreateFileRequest(filename="b.jsonl", purpose="batch", content=b"{}"))
    listed = await store.ListFiles(store_pb2.ListFilesRequest(purpose="assistants"))
    assert [f.id for f in listed.files] == [created.id]
    assert len((await store.ListFiles(store_pb2.ListFilesRequest())).files) == 2
    content = await store.GetFileContent(store_pb2.GetFileContentRequest(file_id=created.id))
    assert content.content == b"# Notes\n"
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await store.GetFile(store_pb2.GetFileRequest(file_id=created.id), metadata=BETA)
    assert error_code(other.value) == "file_not_found"
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await store.CreateFile(store_pb2.CreateFileRequest(filename="x", purpose="nonsense", content=b"x"))
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await store.DeleteFile(store_pb2.DeleteFileRequest(file_id=created.id))
    with pytest.raises(grpc.aio.AioRpcError):
        await store.GetFile(store_pb2.GetFileRequest(file_id=created.id))


async def test_a_document_is_searchable_only_once_all_its_chunks_are_shown(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    base = await new_base(store)
    document = await indexed(
        store, base, [("alpha chunk", unit(1, 0, 0)), ("beta chunk", unit(0, 1, 0))], finish=False
    )
    assert document.status == "queued"
    assert await search(store, base, VECTOR, unit(1, 0, 0)) == []
    assert await search(store, base, TEXT, query="alpha") == []
    work = await store.GetIndexingWork(store_pb2.GetIndexingWorkRequest(document_id=document.id))
    assert (work.generation, work.chunks_written, work.done) == (1, 2, False)
    assert work.document.status == "in_progress" and work.document.chunk_count == 2
    with pytest.raises(grpc.aio.AioRpcError) as short:
        await store.FinishDocument(
            store_pb2.FinishDocumentRequest(document_id=document.id, generation=1, chunk_count=3)
        )
    assert short.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await store.FinishDocument(
        store_pb2.FinishDocumentRequest(document_id=document.id, generation=1, chunk_count=2)
    )
    assert await search(store, base, VECTOR, unit(1, 0.1, 0)) == ["alpha chunk", "beta chunk"]
    assert await search(store, base, TEXT, query="beta") == ["beta chunk"]
    got = (
        await store.GetKnowledgeBase(store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base.id))
    ).knowledge_base
    assert got.documents.completed == 1 and got.documents.total == 1


async def test_the_same_text_twice_is_one_document_and_a_rewritten_batch_is_kept_once(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    base = await new_base(store)
    first = await store.AddDocument(store_pb2.AddDocumentRequest(knowledge_base_id=base.id, text="same text"))
    again = await store.AddDocument(store_pb2.AddDocumentRequest(knowledge_base_id=base.id, text="same text"))
    assert first.created and not again.created and again.document.id == first.document.id
    chunk = store_pb2.NewChunk(position=0, text="same text", start=0, end=9, embedding=unit(1, 1))
    for _ in range(2):  # a job that died after writing and wrote the batch again
        written = await store.PutChunks(
            store_pb2.PutChunksRequest(
                document_id=first.document.id, generation=1, chunks=[chunk], chunk_total=1
            )
        )
        assert written.chunks_written == 1
    await store.FinishDocument(
        store_pb2.FinishDocumentRequest(document_id=first.document.id, generation=1, chunk_count=1)
    )
    assert await search(store, base, VECTOR, unit(1, 1)) == ["same text"]


async def test_hits_carry_document_offsets_and_scores(store: store_pb2_grpc.StoreServiceStub) -> None:
    base = await new_base(store)
    document = await indexed(
        store, base, [("first part", unit(1, 0)), ("second part", unit(0, 1))], {"k": "v"}
    )
    answer = await store.SearchChunks(
        store_pb2.SearchChunksRequest(
            knowledge_base_ids=[base.id], embedding_model="m1", query_vector=unit(0, 1), mode=VECTOR, top_k=1
        )
    )
    (hit,) = answer.hits
    assert (hit.document_id, hit.knowledge_base_id, hit.chunk_position) == (document.id, base.id, 1)
    assert (hit.start, hit.end, hit.text) == (12, 23, "second part")
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert json.loads(hit.metadata_json) == {"k": "v"}


async def test_hybrid_finds_what_each_ranking_alone_puts_second(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    """The answer is second by vector (a paraphrase is nearer) and second by text (a keyword-stuffed
    chunk matches more terms), first in neither; fusing their scores puts it first."""
    base = await new_base(store)
    await indexed(store, base, [("refund policy refund refund refund", unit(0, -1, 0))])
    await indexed(store, base, [("money back rules for returns", unit(1, 0, 0))])
    await indexed(store, base, [("refund policy for returned goods", unit(0.9, 0.1, 0.4))])
    await indexed(store, base, [("opening hours of the shop", unit(0, 1, 0))])
    query_vector, query = unit(1, 0.05, 0.2), "refund policy"
    by_vector = await search(store, base, VECTOR, query_vector, top_k=2)
    by_text = await search(store, base, TEXT, query=query, top_k=2)
    hybrid = await search(store, base, HYBRID, query_vector, query, top_k=2)
    answer = "refund policy for returned goods"
    assert by_vector[0] != answer and by_text[0] != answer
    assert hybrid[0] == answer


async def test_metadata_filters_narrow_every_mode(store: store_pb2_grpc.StoreServiceStub) -> None:
    base = await new_base(store)
    await indexed(store, base, [("guide for 2023 release", unit(1, 0))], {"year": 2023, "lang": "en"})
    await indexed(store, base, [("guide for 2024 release", unit(0.9, 0.1))], {"year": 2024, "lang": "en"})
    recent = {"type": "gte", "key": "year", "value": 2024}
    for mode in (VECTOR, TEXT, HYBRID):
        assert await search(store, base, mode, unit(1, 0), "guide", filter_=recent) == [
            "guide for 2024 release"
        ]
    assert (
        await search(store, base, VECTOR, unit(1, 0), filter_={"type": "eq", "key": "lang", "value": "ja"})
        == []
    )
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await search(store, base, VECTOR, unit(1, 0), filter_={"type": "like", "key": "x", "value": 1})
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_japanese_text_search_ranks_by_shared_bigrams(store: store_pb2_grpc.StoreServiceStub) -> None:
    base = await new_base(store)
    await indexed(store, base, [("東京都の天気予報は晴れです。", unit(1, 0))])
    await indexed(store, base, [("大阪の天気は雨でした。", unit(0, 1))])
    await indexed(store, base, [("全文検索エンジンの仕組み", unit(1, 1))])
    assert await search(store, base, TEXT, query="東京の天気予報") == [
        "東京都の天気予報は晴れです。",
        "大阪の天気は雨でした。",
    ]
    assert await search(store, base, TEXT, query="検索") == ["全文検索エンジンの仕組み"]


async def test_deleting_a_document_removes_its_chunks(store: store_pb2_grpc.StoreServiceStub) -> None:
    base = await new_base(store)
    gone = await indexed(store, base, [("to be deleted", unit(1, 0))])
    await indexed(store, base, [("to be kept", unit(0, 1))])
    await store.DeleteDocument(
        store_pb2.DeleteDocumentRequest(knowledge_base_id=base.id, document_id=gone.id)
    )
    assert await search(store, base, VECTOR, unit(1, 0)) == ["to be kept"]
    assert await search(store, base, TEXT, query="deleted") == []
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await store.GetDocument(store_pb2.GetDocumentRequest(knowledge_base_id=base.id, document_id=gone.id))
    assert error_code(missing.value) == "document_not_found"


async def test_a_knowledge_base_being_indexed_is_deleted_only_with_force(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    base = await new_base(store)
    await store.AddDocument(store_pb2.AddDocumentRequest(knowledge_base_id=base.id, text="queued text"))
    with pytest.raises(grpc.aio.AioRpcError) as busy:
        await store.DeleteKnowledgeBase(store_pb2.DeleteKnowledgeBaseRequest(knowledge_base_id=base.id))
    assert error_code(busy.value) == "knowledge_base_in_use"
    await store.DeleteKnowledgeBase(
        store_pb2.DeleteKnowledgeBaseRequest(knowledge_base_id=base.id, force=True)
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await store.GetKnowledgeBase(store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base.id))
    assert error_code(gone.value) == "knowledge_base_not_found"


async def test_a_new_model_is_served_only_once_every_document_has_its_vectors(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    base = await new_base(store, model="m1")
    one = await indexed(store, base, [("first doc", unit(1, 0))])
    two = await indexed(store, base, [("second doc", unit(0, 1))])
    updated = await store.UpdateKnowledgeBase(
        store_pb2.UpdateKnowledgeBaseRequest(knowledge_base_id=base.id, embedding_model="m2")
    )
    assert sorted(updated.reindex_document_ids) == sorted([one.id, two.id])
    assert (updated.knowledge_base.generation, updated.knowledge_base.serving_generation) == (2, 1)
    assert updated.knowledge_base.serving_model == "m1"

    async def reembed(document: store_pb2.KbDocument, text: str, vector: list[float]) -> None:
        chunk = store_pb2.NewChunk(position=0, text=text, start=0, end=len(text), embedding=vector)
        await store.PutChunks(
            store_pb2.PutChunksRequest(document_id=document.id, generation=2, chunks=[chunk], chunk_total=1)
        )
        await store.FinishDocument(
            store_pb2.FinishDocumentRequest(document_id=document.id, generation=2, chunk_count=1)
        )

    # The new model's vectors have 3 dimensions; until both documents have them, m1 (2) serves.
    await reembed(one, "first doc", unit(0, 0, 1))
    assert await search(store, base, VECTOR, unit(1, 0), model="m1") == ["first doc", "second doc"]
    with pytest.raises(grpc.aio.AioRpcError) as mixed:
        await search(store, base, VECTOR, unit(0, 0, 1), model="m2")
    assert error_code(mixed.value) == "embedding_model_mismatch"
    await reembed(two, "second doc", unit(0, 1, 0))
    got = (
        await store.GetKnowledgeBase(store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base.id))
    ).knowledge_base
    assert (got.serving_generation, got.serving_model) == (2, "m2")
    assert await search(store, base, VECTOR, unit(0, 0, 1), model="m2") == ["first doc", "second doc"]
    with pytest.raises(grpc.aio.AioRpcError):
        await search(store, base, VECTOR, unit(1, 0), model="m1")


async def test_approximate_and_exact_search_agree_on_a_small_set(
    store: store_pb2_grpc.StoreServiceStub,
) -> None:
    base = await new_base(store)
    for i in range(12):
        await indexed(store, base, [(f"chunk number {i}", unit(1, i / 4, (i % 3) / 2))])
    query = unit(1, 1, 0.5)
    assert await search(store, base, VECTOR, query, exact=True) == await search(store, base, VECTOR, query)


async def test_knowledge_bases_belong_to_their_project(store: store_pb2_grpc.StoreServiceStub) -> None:
    base = await new_base(store)
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await store.GetKnowledgeBase(
            store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base.id), metadata=BETA
        )
    assert error_code(other.value) == "knowledge_base_not_found"
    listed = await store.ListKnowledgeBases(store_pb2.ListKnowledgeBasesRequest(), metadata=BETA)
    assert list(listed.knowledge_bases) == []


async def test_postgresql_without_pgvector_fails_knowledge_bases_alone(database_url: str) -> None:
    """The system PostgreSQL here has no pgvector: the store starts and serves everything else, and a
    knowledge base's first vector says what is missing."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL case: SQLite has no vector extension to lack")
    server, port = create_store(StoreSettings(port=0, database_url=database_url))
    async with running(server), channel_to(port) as channel:
        stub = store_pb2_grpc.StoreServiceStub(channel)
        available = await stub.CreateStoredResponse(
            store_pb2.CreateStoredResponseRequest(
                status=common_pb2.RESPONSE_STATUS_COMPLETED,
                model="m",
                input=[store_pb2.NewResponseItem(role="user", content="hi")],
            )
        )
        assert available.response.response_id
        base = await new_base(stub)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await indexed(stub, base, [("text", unit(1, 0))])
        except AssertionError:
            pytest.skip("this PostgreSQL has pgvector")
        assert error_code(missing.value) == "vector_search_unavailable"
        assert "pgvector" in (missing.value.details() or "")

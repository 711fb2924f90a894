"""Uploaded files, knowledge bases, their documents and chunks, and search over them, per project.

Vectors: float32 bytes on SQLite, searched exactly with numpy (the Python this mesh runs on may lack
SQLite extension loading, which sqlite-vec needs; sqlite-vec's vec0 is an exact scan too); real[] on
PostgreSQL, searched through pgvector's HNSW index (cosine) on the column cast to vector(n), one
partial index per dimension, made when a knowledge base first needs it. The extension is created at
that moment too, so a PostgreSQL without pgvector serves everything else and fails only knowledge
base calls, with a message saying so.

Full text: the store derives terms from a chunk's text (`terms`: lower-cased NFKC words, and
overlapping character bigrams of Japanese and Chinese runs, which have no spaces between words) and
indexes them with FTS5 (bm25) on SQLite and a tsvector with a GIN index (ts_rank_cd) on PostgreSQL.
A query's terms are OR-ed, so a Japanese query matches chunks that share its bigrams, ranked by how
many and how rare. Hybrid search fuses the vector and text rankings by their scores (each divided by
its ranking's best, then weighted 0.75 vector, 0.25 text: relative score fusion, as Weaviate's
default): unlike reciprocal rank fusion, a text ranking of weak word matches cannot push the vector
ranking's best below a chunk that only shares a common word with the query.

A document is searchable once all its chunks of the serving generation are written: chunks are
written hidden and shown together when FinishDocument records the document's indexed generation
(searches take only chunks whose document has finished their generation; no chunk row is rewritten).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import unicodedata
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common.errors import FailedPrecondition, FileTooLarge, InvalidArgument, NotFound, shown
from services.store.repository import keyset_page, unit_of_work
from services.store.tables import (
    KbChunk,
    KbDocument,
    KbFileBatch,
    KnowledgeBase,
    PromptTemplate,
    StoredFile,
    TemplateVersion,
    utcnow,
)

log = logging.getLogger("llmmesh.store.knowledge")

# What a file may be uploaded for (OpenAI's purposes).
PURPOSES = frozenset(
    {"assistants", "assistants_output", "batch", "batch_output", "fine-tune", "vision", "user_data", "evals"}
)
DOCUMENT_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
# Below the mesh's 16 MiB gRPC message limit, with room for the rest of the message.
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DOCUMENT_CHARS = 4_000_000
MAX_CHUNKS_PER_DOCUMENT = 20_000
MAX_TOP_K = 50
DEFAULT_TOP_K = 10
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 200
MAX_CHUNK_SIZE = 8000
DEFAULT_PAGE = 100
MAX_PAGE = 10_000
MAX_METADATA_PAIRS = 16
# The vector ranking's share of a hybrid search's fused score (the text ranking has the rest).
HYBRID_VECTOR_WEIGHT = 0.75
# The approximate index returns its ef_search nearest rows before other conditions apply; asking for
# this many times top_k keeps a filtered-out row from costing a hit.
EF_SEARCH_FACTOR = 4
MIN_EF_SEARCH = 40
MAX_INDEXED_DIMENSIONS = 2000


class FileNotFound(NotFound):
    code = "file_not_found"


class KnowledgeBaseNotFound(NotFound):
    code = "knowledge_base_not_found"


class DocumentNotFound(NotFound):
    code = "document_not_found"


class FileBatchNotFound(NotFound):
    code = "file_batch_not_found"


class InvalidKnowledgeRequest(InvalidArgument):
    code = "invalid_knowledge_request"


class KnowledgeBaseInUse(FailedPrecondition):
    code = "knowledge_base_in_use"


class VectorSearchUnavailable(FailedPrecondition):
    """PostgreSQL without the pgvector extension: knowledge bases cannot work there."""

    code = "vector_search_unavailable"


class EmbeddingModelMismatch(FailedPrecondition):
    code = "embedding_model_mismatch"


# Terms

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_TERM = re.compile(f"([{_CJK}]+)|([^\\W_{_CJK}]+)")


# English words too common to tell chunks apart (PostgreSQL's english configuration drops these too):
# a question's "how", "do", "to" would otherwise rank a chunk above the one about its subject.
STOPWORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have "
    "having he her here hers herself him himself his how i if in into is it its itself just me more most "
    "my myself no nor not now of off on once only or other our ours ourselves out over own same she "
    "should so some such than that the their theirs them themselves then there these they this those "
    "through to too under until up very was we were what when where which while who whom why will with "
    "would you your yours yourself yourselves".split()
)


def terms(source: str) -> list[str]:
    """The full-text terms of a text, in order: NFKC-normalised lower-case words but English stopwords,
    and for runs of Japanese or Chinese characters their overlapping bigrams (a lone character
    stands for itself)."""
    found: list[str] = []
    for match in _TERM.finditer(unicodedata.normalize("NFKC", source).lower()):
        cjk, word = match.groups()
        if word:
            if word not in STOPWORDS:
                found.append(word)
        elif len(cjk) == 1:
            found.append(cjk)
        else:
            found.extend(cjk[i : i + 2] for i in range(len(cjk) - 1))
    return found


def _tsvector_literal(words: Sequence[str]) -> str:
    """A tsvector's text form with positions (so ts_rank_cd can use them), lexemes taken verbatim."""
    positions: dict[str, list[int]] = {}
    for index, word in enumerate(words[:16383], start=1):  # tsvector positions stop at 16383
        positions.setdefault(word, []).append(index)
    return " ".join(
        "'{}':{}".format(word.replace("'", "''"), ",".join(map(str, spots[:255])))
        for word, spots in positions.items()
    )


def _fts5_query(words: Sequence[str]) -> str:
    return " OR ".join('"{}"'.format(word.replace('"', '""')) for word in dict.fromkeys(words))


def _tsquery(words: Sequence[str]) -> str:
    return " | ".join("'{}'".format(word.replace("'", "''")) for word in dict.fromkeys(words))


# Metadata filters (OpenAI's attribute filters)

_COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}


def check_filter(spec: Any) -> None:
    """Raise InvalidKnowledgeRequest unless spec is a comparison or an and/or of filters."""
    if not isinstance(spec, dict):
        raise InvalidKnowledgeRequest("a filter is a JSON object")
    kind = spec.get("type")
    if kind in ("and", "or"):
        filters = spec.get("filters")
        if not isinstance(filters, list) or not filters:
            raise InvalidKnowledgeRequest(f"an {kind!r} filter needs a non-empty list of filters")
        for inner in filters:
            check_filter(inner)
        return
    if kind not in _COMPARISONS:
        raise InvalidKnowledgeRequest(
            f"a filter's type is one of {', '.join(sorted(_COMPARISONS | {'and', 'or'}))}"
        )
    if not isinstance(spec.get("key"), str) or "value" not in spec:
        raise InvalidKnowledgeRequest("a comparison filter needs a key (a string) and a value")
    if kind in ("in", "nin") and not isinstance(spec["value"], list):
        raise InvalidKnowledgeRequest(f"an {kind!r} filter's value is a list")


def matches(spec: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """Whether a document's attributes pass a (checked) filter; a missing key fails comparisons."""
    kind = spec["type"]
    if kind == "and":
        return all(matches(inner, attributes) for inner in spec["filters"])
    if kind == "or":
        return any(matches(inner, attributes) for inner in spec["filters"])
    key, value = spec["key"], spec["value"]
    if key not in attributes:
        return kind in ("ne", "nin")
    actual = attributes[key]
    try:
        if kind == "eq":
            return bool(actual == value)
        if kind == "ne":
            return bool(actual != value)
        if kind == "in":
            return actual in value
        if kind == "nin":
            return actual not in value
        if kind == "gt":
            return bool(actual > value)
        if kind == "gte":
            return bool(actual >= value)
        if kind == "lt":
            return bool(actual < value)
        return bool(actual <= value)
    except TypeError:  # a number compared with a string
        return False


def fuse(rankings: Sequence[tuple[Sequence[tuple[int, float]], float]]) -> list[tuple[int, float]]:
    """Relative score fusion: each (id, score) ranking's scores divided by its best score (negative
    ones count 0), times the ranking's weight, summed per id; best first."""
    scores: dict[int, float] = {}
    for ranking, weight in rankings:
        best = max((score for _, score in ranking), default=0.0)
        for item, score in ranking:
            share = max(0.0, score / best) if best > 0 else 0.0
            scores[item] = scores.get(item, 0.0) + weight * share
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def content_hash(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


@dataclass(frozen=True)
class KnowledgeBaseView:
    """A knowledge base with its documents counted by status and their text's size."""

    base: KnowledgeBase
    counts: dict[str, int]
    bytes: int


@dataclass(frozen=True)
class FileBatchView:
    """A file batch with its documents counted by status, and the ingestion jobs still pending."""

    batch: KbFileBatch
    knowledge_base_id: str
    counts: dict[str, int]
    pending_job_ids: list[str]

    @property
    def status(self) -> str:
        """OpenAI's batch status: in progress while a document is; then cancelled, failed when
        every document failed, else completed."""
        if self.counts["in_progress"]:
            return "in_progress"
        if self.batch.cancelled_at is not None:
            return "cancelled"
        if self.counts["failed"] and not self.counts["completed"]:
            return "failed"
        return "completed"


# Most files one batch may hold (OpenAI's limit).
MAX_BATCH_FILES = 2000


@dataclass(frozen=True)
class IndexingWork:
    document: KbDocument
    text: str
    generation: int
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    chunks_written: int
    done: bool


@dataclass(frozen=True)
class NewChunk:
    position: int
    text: str
    start: int
    end: int
    embedding: Sequence[float]


@dataclass(frozen=True)
class Hit:
    knowledge_base_id: str
    document_id: str
    file_id: str
    title: str
    position: int
    text: str
    start: int
    end: int
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchQuery:
    knowledge_base_ids: Sequence[str]
    embedding_model: str
    mode: str  # vector, text or hybrid
    vector: Sequence[float] = ()
    text: str = ""
    top_k: int = DEFAULT_TOP_K
    filter: dict[str, Any] | None = None
    exact: bool = False


def _check_metadata(metadata: dict[str, Any]) -> None:
    if len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidKnowledgeRequest(f"metadata holds at most {MAX_METADATA_PAIRS} pairs")


def _page_limit(limit: int) -> int:
    if limit < 0 or limit > MAX_PAGE:
        raise InvalidKnowledgeRequest(f"limit is 1-{MAX_PAGE}")
    return limit or DEFAULT_PAGE


class Knowledge:
    """Files and knowledge bases, each in its project: another project's is NOT_FOUND."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"
        self._vector_ready = False
        self._indexed_dimensions: set[int] = set()
        # SQLite: each knowledge base generation's visible vectors as one matrix, dropped when this
        # store (SQLite's only writer) changes its chunks.
        self._matrices: dict[tuple[int, int, int], tuple[Any, Any]] = {}

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    # Files

    async def create_file(
        self, project: str, filename: str, purpose: str, content_type: str, content: bytes
    ) -> StoredFile:
        if purpose not in PURPOSES:
            raise InvalidKnowledgeRequest(f"purpose is one of {', '.join(sorted(PURPOSES))}")
        if not filename or len(filename) > 255:
            raise InvalidKnowledgeRequest("a file needs a name of 1-255 characters")
        if len(content) > MAX_FILE_BYTES:
            raise FileTooLarge(f"a file is at most {MAX_FILE_BYTES} bytes; this one is {len(content)}")
        stored = StoredFile(
            id=_new_id("file-"),
            project_id=project,
            filename=filename,
            purpose=purpose,
            content_type=content_type or "application/octet-stream",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
        )
        async with self._transaction() as db:
            db.add(stored)
        return stored

    async def list_files(
        self, project: str, purpose: str, limit: int, after: str, ascending: bool
    ) -> tuple[list[StoredFile], bool]:
        limit = _page_limit(limit)
        query = select(StoredFile).where(StoredFile.project_id == project)
        if purpose:
            query = query.where(StoredFile.purpose == purpose)
        async with self._transaction() as db:
            mark = await self._file(db, project, after) if after else None
            keys = (StoredFile.created_at, StoredFile.id)
            cursor = (mark.created_at, mark.id) if mark else None
            return await keyset_page(db, query, keys, cursor, limit, ascending)

    @staticmethod
    async def _file(db: AsyncSession, project: str, file_id: str) -> StoredFile:
        found = await db.scalar(
            select(StoredFile).where(StoredFile.project_id == project, StoredFile.id == file_id)
        )
        if found is None:
            raise FileNotFound(f"no file has id {shown(file_id)}")
        return found

    async def get_file(self, project: str, file_id: str) -> StoredFile:
        async with self._transaction() as db:
            return await self._file(db, project, file_id)

    async def file_content(self, project: str, file_id: str) -> tuple[StoredFile, bytes]:
        async with self._transaction() as db:
            stored = await self._file(db, project, file_id)
            content = await db.scalar(select(StoredFile.content).where(StoredFile.id == stored.id))
        return stored, bytes(content or b"")

    async def delete_file(self, project: str, file_id: str) -> None:
        async with self._transaction() as db:
            stored = await self._file(db, project, file_id)
            await db.delete(stored)

    # Knowledge bases

    async def create_knowledge_base(
        self,
        project: str,
        name: str,
        description: str,
        metadata: dict[str, str],
        embedding_model: str,
        chunk_size: int,
        chunk_overlap: int | None,
    ) -> KnowledgeBaseView:
        if len(name) > 200:
            raise InvalidKnowledgeRequest("a knowledge base's name is at most 200 characters")
        if not embedding_model:
            raise InvalidKnowledgeRequest("a knowledge base needs an embedding model")
        _check_metadata(metadata)
        size = chunk_size or DEFAULT_CHUNK_SIZE
        overlap = chunk_overlap if chunk_overlap is not None else min(DEFAULT_CHUNK_OVERLAP, size // 4)
        if not 100 <= size <= MAX_CHUNK_SIZE:
            raise InvalidKnowledgeRequest(f"chunk_size is 100-{MAX_CHUNK_SIZE} characters")
        if not 0 <= overlap <= size // 2:
            raise InvalidKnowledgeRequest("chunk_overlap is 0 to half the chunk size")
        base = KnowledgeBase(
            id=_new_id("vs_"),
            project_id=project,
            name=name,
            description=description,
            labels=dict(metadata),
            embedding_model=embedding_model,
            serving_model=embedding_model,
            generation=1,
            serving_generation=1,
            chunk_size=size,
            chunk_overlap=overlap,
        )
        async with self._transaction() as db:
            db.add(base)
        return KnowledgeBaseView(base, dict.fromkeys(DOCUMENT_STATUSES, 0), 0)

    @staticmethod
    async def _base(db: AsyncSession, project: str, base_id: str) -> KnowledgeBase:
        found = await db.scalar(
            select(KnowledgeBase).where(KnowledgeBase.project_id == project, KnowledgeBase.id == base_id)
        )
        if found is None:
            raise KnowledgeBaseNotFound(f"no knowledge base has id {shown(base_id)}")
        return found

    @staticmethod
    async def _views(db: AsyncSession, bases: Sequence[KnowledgeBase]) -> list[KnowledgeBaseView]:
        pks = [b.pk for b in bases]
        counts: dict[int, dict[str, int]] = {pk: dict.fromkeys(DOCUMENT_STATUSES, 0) for pk in pks}
        sizes: dict[int, int] = dict.fromkeys(pks, 0)
        if pks:
            rows = await db.execute(
                select(
                    KbDocument.knowledge_base_pk,
                    KbDocument.status,
                    func.count(),
                    func.coalesce(func.sum(func.length(KbDocument.text)), 0),
                )
                .where(KbDocument.knowledge_base_pk.in_(pks))
                .group_by(KbDocument.knowledge_base_pk, KbDocument.status)
            )
            for pk, status, count, size in rows:
                counts[pk][status] = int(count)
                sizes[pk] += int(size)
        return [KnowledgeBaseView(b, counts[b.pk], sizes[b.pk]) for b in bases]

    async def get_knowledge_base(self, project: str, base_id: str) -> KnowledgeBaseView:
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            return (await self._views(db, [base]))[0]

    async def list_knowledge_bases(
        self, project: str, limit: int, after: str, ascending: bool
    ) -> tuple[list[KnowledgeBaseView], bool]:
        limit = _page_limit(limit)
        query = select(KnowledgeBase).where(KnowledgeBase.project_id == project)
        async with self._transaction() as db:
            mark = (await self._base(db, project, after)).pk if after else None
            bases, more = await keyset_page(
                db, query, (KnowledgeBase.pk,), (mark,) if mark is not None else None, limit, ascending
            )
            return await self._views(db, bases), more

    async def update_knowledge_base(
        self,
        project: str,
        base_id: str,
        name: str | None = None,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        embedding_model: str | None = None,
    ) -> tuple[KnowledgeBaseView, list[str]]:
        """The updated knowledge base, and the documents to embed again when its model changed."""
        reindex: list[str] = []
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            if name is not None:
                base.name = name
            if description is not None:
                base.description = description
            if metadata is not None:
                _check_metadata(metadata)
                base.labels = dict(metadata)
            if embedding_model and embedding_model != base.embedding_model:
                base.embedding_model = embedding_model
                base.generation += 1
                documents = list(
                    await db.scalars(
                        select(KbDocument).where(
                            KbDocument.knowledge_base_pk == base.pk, KbDocument.status != "failed"
                        )
                    )
                )
                for document in documents:
                    document.status = "in_progress" if document.status == "completed" else document.status
                    document.updated_at = utcnow()
                reindex = [d.id for d in documents]
                if not documents:  # nothing to embed again: the new model serves at once
                    base.serving_generation, base.serving_model = base.generation, embedding_model
            base.updated_at = utcnow()
            view = (await self._views(db, [base]))[0]
        return view, reindex

    async def delete_knowledge_base(self, project: str, base_id: str, force: bool) -> None:
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            busy = await db.scalar(
                select(func.count()).where(
                    KbDocument.knowledge_base_pk == base.pk,
                    KbDocument.status.in_(("queued", "in_progress")),
                )
            )
            if busy and not force:
                raise KnowledgeBaseInUse(
                    f"knowledge base {base.id} has {busy} documents being indexed; delete it with force"
                )
            if not force:
                rows = await db.execute(
                    select(PromptTemplate.name, TemplateVersion.number, TemplateVersion.llm_options)
                    .join(TemplateVersion, TemplateVersion.template_id == PromptTemplate.id)
                    .where(PromptTemplate.project_id == project, TemplateVersion.status != "ARCHIVED")
                )
                users = [
                    f"{name} v{number}"
                    for name, number, options in rows
                    if base.id in ((options or {}).get("knowledge_bases") or ())
                ]
                if users:
                    raise KnowledgeBaseInUse(
                        f"knowledge base {base.id} is named by template versions {', '.join(users[:5])}; "
                        "archive them, or delete it with force"
                    )
            # Chunks first: on SQLite their FTS rows go with them (a trigger per deleted row).
            await db.execute(delete(KbChunk).where(KbChunk.knowledge_base_pk == base.pk))
            await db.execute(delete(KbDocument).where(KbDocument.knowledge_base_pk == base.pk))
            await db.delete(base)
        self._forget_vectors(base.pk)

    # Documents

    async def add_document(
        self,
        project: str,
        base_id: str,
        title: str,
        content_type: str,
        text_: str,
        metadata: dict[str, Any],
        file_id: str | None,
    ) -> tuple[KbDocument, bool]:
        if not text_.strip():
            raise InvalidKnowledgeRequest("the document has no text")
        if len(text_) > MAX_DOCUMENT_CHARS:
            raise FileTooLarge(
                f"a document's text is at most {MAX_DOCUMENT_CHARS} characters; this one is {len(text_)}"
            )
        _check_metadata(metadata)
        digest = content_hash(text_)
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            existing = await db.scalar(
                select(KbDocument).where(
                    KbDocument.knowledge_base_pk == base.pk, KbDocument.content_hash == digest
                )
            )
            if existing is not None:
                return existing, False
            document = KbDocument(
                id=_new_id("doc_"),
                knowledge_base_pk=base.pk,
                file_id=file_id,
                title=(title or file_id or "document")[:500],
                content_type=content_type or "text/plain",
                content_hash=digest,
                text=text_,
                labels=dict(metadata),
                status="queued",
            )
            document.knowledge_base = base
            db.add(document)
        return document, True

    @staticmethod
    async def _document(
        db: AsyncSession, project: str, document_id: str, base_id: str | None = None
    ) -> tuple[KbDocument, KnowledgeBase]:
        """A document by its id; within a knowledge base also by the id of the file it came from (as
        OpenAI names a vector store's files: one file may be in several vector stores)."""
        query = select(KbDocument, KnowledgeBase).join(
            KnowledgeBase, KnowledgeBase.pk == KbDocument.knowledge_base_pk
        )
        if base_id:
            query = query.where(
                KnowledgeBase.id == base_id,
                or_(KbDocument.id == document_id, KbDocument.file_id == document_id),
            )
        else:
            query = query.where(KbDocument.id == document_id)
        query = query.where(KnowledgeBase.project_id == project)
        row = (await db.execute(query)).first()
        if row is None:
            raise DocumentNotFound(f"no document has id {shown(document_id)}")
        document, base = row
        return document, base

    async def set_document_job(self, project: str, document_id: str, job_id: str) -> KbDocument:
        async with self._transaction() as db:
            document, _ = await self._document(db, project, document_id)
            document.job_id = job_id
            return document

    async def get_document(self, project: str, base_id: str, document_id: str) -> KbDocument:
        async with self._transaction() as db:
            document, _ = await self._document(db, project, document_id, base_id or None)
            return document

    async def list_documents(
        self,
        project: str,
        base_id: str,
        status: str,
        limit: int,
        after: str,
        ascending: bool,
        file_batch_id: str = "",
    ) -> tuple[list[KbDocument], bool]:
        limit = _page_limit(limit)
        if status and status not in DOCUMENT_STATUSES:
            raise InvalidKnowledgeRequest(f"status is one of {', '.join(DOCUMENT_STATUSES)}")
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            query = select(KbDocument).where(KbDocument.knowledge_base_pk == base.pk)
            if status:
                query = query.where(KbDocument.status == status)
            if file_batch_id:
                batch, _ = await self._batch(db, project, base_id, file_batch_id)
                query = query.where(KbDocument.file_id.in_(batch.file_ids))
            mark = (await self._document(db, project, after, base_id))[0].pk if after else None
            return await keyset_page(
                db, query, (KbDocument.pk,), (mark,) if mark is not None else None, limit, ascending
            )

    # File batches

    async def _batch_view(self, db: AsyncSession, batch: KbFileBatch, base: KnowledgeBase) -> FileBatchView:
        rows = await db.execute(
            select(KbDocument.status, KbDocument.job_id).where(
                KbDocument.knowledge_base_pk == base.pk, KbDocument.file_id.in_(batch.file_ids)
            )
        )
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
        pending: list[str] = []
        for status, job_id in rows:
            if status in ("queued", "in_progress"):
                counts["in_progress"] += 1
                if job_id:
                    pending.append(job_id)
            else:
                counts[status] += 1
        return FileBatchView(batch, base.id, counts, pending)

    async def _batch(
        self, db: AsyncSession, project: str, base_id: str, batch_id: str
    ) -> tuple[KbFileBatch, KnowledgeBase]:
        base = await self._base(db, project, base_id)
        batch = await db.scalar(
            select(KbFileBatch).where(KbFileBatch.id == batch_id, KbFileBatch.knowledge_base_pk == base.pk)
        )
        if batch is None:
            raise FileBatchNotFound(f"no file batch has id {shown(batch_id)}")
        return batch, base

    async def create_file_batch(self, project: str, base_id: str, file_ids: Sequence[str]) -> FileBatchView:
        """A batch of files the caller attached to the knowledge base. A file whose text another file
        of the knowledge base already has shares that file's document, which the batch counts once."""
        unique = list(dict.fromkeys(file_ids))
        if not unique or len(unique) > MAX_BATCH_FILES:
            raise InvalidKnowledgeRequest(f"a file batch holds 1-{MAX_BATCH_FILES} files")
        async with self._transaction() as db:
            base = await self._base(db, project, base_id)
            batch = KbFileBatch(
                id=_new_id("vsfb_"), knowledge_base_pk=base.pk, file_ids=unique, created_at=utcnow()
            )
            db.add(batch)
            await db.flush()
            return await self._batch_view(db, batch, base)

    async def get_file_batch(self, project: str, base_id: str, batch_id: str) -> FileBatchView:
        async with self._transaction() as db:
            batch, base = await self._batch(db, project, base_id, batch_id)
            return await self._batch_view(db, batch, base)

    async def cancel_file_batch(self, project: str, base_id: str, batch_id: str) -> FileBatchView:
        """Mark the batch cancelled, and its documents not indexed yet cancelled; what it returns
        names their jobs, for the caller to stop. A document whose job is already running may still
        finish."""
        async with self._transaction() as db:
            batch, base = await self._batch(db, project, base_id, batch_id)
            if batch.cancelled_at is None:
                batch.cancelled_at = utcnow()
            pending = list(
                await db.scalars(
                    select(KbDocument).where(
                        KbDocument.knowledge_base_pk == base.pk,
                        KbDocument.file_id.in_(batch.file_ids),
                        KbDocument.status.in_(("queued", "in_progress")),
                    )
                )
            )
            for document in pending:
                document.status = "cancelled"
                document.updated_at = utcnow()
            await db.flush()
            view = await self._batch_view(db, batch, base)
            return FileBatchView(batch, base.id, view.counts, [d.job_id for d in pending if d.job_id])

    async def delete_document(self, project: str, base_id: str, document_id: str) -> None:
        async with self._transaction() as db:
            document, base = await self._document(db, project, document_id, base_id or None)
            await db.execute(delete(KbChunk).where(KbChunk.document_pk == document.pk))
            await db.delete(document)
        self._forget_vectors(base.pk)

    # Indexing

    async def indexing_work(self, project: str, document_id: str) -> IndexingWork:
        async with self._transaction() as db:
            document, base = await self._document(db, project, document_id)
            text_ = await db.scalar(select(KbDocument.text).where(KbDocument.pk == document.pk))
            written = await db.scalar(
                select(func.count()).where(
                    KbChunk.document_pk == document.pk, KbChunk.generation == base.generation
                )
            )
            done = document.indexed_generation >= base.generation
            if not done and document.status == "queued":
                document.status = "in_progress"
                document.updated_at = utcnow()
        return IndexingWork(
            document=document,
            text=text_ or "",
            generation=base.generation,
            embedding_model=base.embedding_model,
            chunk_size=base.chunk_size,
            chunk_overlap=base.chunk_overlap,
            chunks_written=int(written or 0),
            done=done,
        )

    async def _ensure_vector_index(self, db: AsyncSession, dimensions: int) -> None:
        """PostgreSQL: pgvector's extension and this dimension's HNSW index, made once per store."""
        if not self._postgres:
            return
        if not self._vector_ready:
            try:
                async with db.begin_nested():
                    await db.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            except DBAPIError:
                log.exception("cannot create the vector extension")
                raise VectorSearchUnavailable(
                    "knowledge bases need PostgreSQL's pgvector extension, which this database does not "
                    "have (install pgvector, or use an image that ships it, e.g. pgvector/pgvector:pg16)"
                ) from None
            self._vector_ready = True
        # pgvector's HNSW indexes vectors of at most 2000 dimensions; longer ones are searched exactly.
        if 0 < dimensions <= MAX_INDEXED_DIMENSIONS and dimensions not in self._indexed_dimensions:
            try:
                async with db.begin_nested():
                    await db.execute(
                        text(
                            f"CREATE INDEX IF NOT EXISTS ix_kb_chunks_hnsw_{dimensions} ON kb_chunks "
                            f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) "
                            f"WHERE dimensions = {dimensions}"
                        )
                    )
            except IntegrityError:
                pass  # another store made it at the same moment
            self._indexed_dimensions.add(dimensions)

    async def put_chunks(
        self, project: str, document_id: str, generation: int, chunks: Sequence[NewChunk], chunk_total: int
    ) -> int:
        """Write hidden chunks (positions already there are kept); the chunks written so far, which
        with chunk_total (the document's chunks in all) is the progress its status shows."""
        if not chunks:
            raise InvalidKnowledgeRequest("no chunks to write")
        dimensions = {len(c.embedding) for c in chunks}
        if len(dimensions) != 1 or 0 in dimensions:
            raise InvalidKnowledgeRequest("every chunk needs an embedding, all of one length")
        (size,) = dimensions
        async with self._transaction() as db:
            document, base = await self._document(db, project, document_id)
            if generation != base.generation:
                raise FailedPrecondition(
                    f"knowledge base {base.id} is at generation {base.generation}, not {generation}"
                )
            if chunk_total > MAX_CHUNKS_PER_DOCUMENT:
                raise FileTooLarge(
                    f"a document is at most {MAX_CHUNKS_PER_DOCUMENT} chunks; this one is {chunk_total}"
                )
            if any(c.position < 0 or c.position >= chunk_total for c in chunks):
                raise FileTooLarge(f"a document is at most {MAX_CHUNKS_PER_DOCUMENT} chunks")
            await self._ensure_vector_index(db, size)
            present = set(
                await db.scalars(
                    select(KbChunk.position).where(
                        KbChunk.document_pk == document.pk,
                        KbChunk.generation == generation,
                        KbChunk.position.in_([c.position for c in chunks]),
                    )
                )
            )
            rows = [
                {
                    "knowledge_base_pk": base.pk,
                    "document_pk": document.pk,
                    "generation": generation,
                    "position": c.position,
                    "text": c.text,
                    "start": c.start,
                    "end": c.end,
                    "dimensions": size,
                    "embedding": self._vector_value(c.embedding),
                    "terms": self._terms_value(c.text),
                }
                for c in chunks
                if c.position not in present
            ]
            if rows and self._postgres:
                await db.execute(
                    text(
                        "INSERT INTO kb_chunks (knowledge_base_pk, document_pk, generation, position, "
                        'text, start, "end", dimensions, embedding, terms) VALUES (:knowledge_base_pk, '
                        ":document_pk, :generation, :position, :text, :start, :end, :dimensions, "
                        "CAST(:embedding AS real[]), CAST(:terms AS tsvector))"
                    ),
                    rows,
                )
            elif rows:
                await db.execute(insert(KbChunk), rows)
            written = await db.scalar(
                select(func.count()).where(
                    KbChunk.document_pk == document.pk, KbChunk.generation == generation
                )
            )
            document.chunk_count, document.chunks_written = chunk_total, int(written or 0)
            document.status = "in_progress" if document.status == "queued" else document.status
            document.updated_at = utcnow()
        return int(written or 0)

    def _vector_value(self, vector: Sequence[float]) -> Any:
        if self._postgres:
            return list(vector)
        import numpy as np

        return np.asarray(vector, dtype=np.float32).tobytes()

    def _terms_value(self, chunk_text: str) -> str:
        words = terms(chunk_text)
        return _tsvector_literal(words) if self._postgres else " ".join(words)

    async def finish_document(
        self, project: str, document_id: str, generation: int, chunk_count: int
    ) -> KbDocument:
        """Show the document's chunks of `generation` (all `chunk_count` must be written); when every
        document has the knowledge base's newest generation, searches move to it."""
        async with self._transaction() as db:
            document, base = await self._document(db, project, document_id)
            if generation != base.generation:
                raise FailedPrecondition(
                    f"knowledge base {base.id} is at generation {base.generation}, not {generation}"
                )
            written = await db.scalar(
                select(func.count()).where(
                    KbChunk.document_pk == document.pk, KbChunk.generation == generation
                )
            )
            if written != chunk_count:
                raise FailedPrecondition(
                    f"document {document.id} has {written} of its {chunk_count} chunks written"
                )
            # This shows the generation's chunks (see _SHOWN): no chunk row is rewritten, so neither
            # is its entry in the vector index.
            document.indexed_generation = generation
            document.chunk_count = document.chunks_written = chunk_count
            document.status = "completed"
            document.error = None
            document.updated_at = utcnow()
            await db.flush()
            if base.serving_generation != base.generation:
                behind = await db.scalar(
                    select(func.count()).where(
                        KbDocument.knowledge_base_pk == base.pk,
                        KbDocument.indexed_generation < base.generation,
                        KbDocument.status != "failed",
                    )
                )
                if not behind:
                    base.serving_generation, base.serving_model = base.generation, base.embedding_model
                    await db.execute(
                        delete(KbChunk).where(
                            KbChunk.knowledge_base_pk == base.pk, KbChunk.generation < base.generation
                        )
                    )
                    log.info(
                        "knowledge base %s serves generation %d (%s)",
                        base.id,
                        base.generation,
                        base.embedding_model,
                    )
        self._forget_vectors(base.pk)
        return document

    async def fail_document(self, project: str, document_id: str, error: dict[str, str]) -> KbDocument:
        async with self._transaction() as db:
            document, _ = await self._document(db, project, document_id)
            # Failed also when it was being embedded again: a knowledge base waits for no failed
            # document before serving a new model (the document is then not searchable any more).
            document.status = "failed"
            document.error = error
            document.updated_at = utcnow()
            return document

    # Search

    async def search(self, project: str, query: SearchQuery) -> list[Hit]:
        if not query.knowledge_base_ids:
            raise InvalidKnowledgeRequest("a search needs at least one knowledge base")
        if not 0 <= query.top_k <= MAX_TOP_K:
            raise InvalidKnowledgeRequest(f"top_k is 1-{MAX_TOP_K}")
        if query.mode not in ("vector", "text", "hybrid"):
            raise InvalidKnowledgeRequest("a search's mode is vector, text or hybrid")
        if query.mode != "text" and not query.vector:
            raise InvalidKnowledgeRequest("a vector or hybrid search needs the query's embedding")
        if query.mode != "vector" and not terms(query.text):
            if query.mode == "text":
                raise InvalidKnowledgeRequest("a text search needs a query with words in it")
        if query.filter is not None:
            check_filter(query.filter)
        top_k = query.top_k or DEFAULT_TOP_K
        async with self._transaction() as db:
            bases = list(
                await db.scalars(
                    select(KnowledgeBase).where(
                        KnowledgeBase.project_id == project, KnowledgeBase.id.in_(query.knowledge_base_ids)
                    )
                )
            )
            missing = set(query.knowledge_base_ids) - {b.id for b in bases}
            if missing:
                raise KnowledgeBaseNotFound(f"no knowledge base has id {shown(sorted(missing)[0])}")
            other = [b.id for b in bases if b.serving_model != query.embedding_model]
            if other:
                raise EmbeddingModelMismatch(
                    f"knowledge base {other[0]} is searched with {shown(query.embedding_model)}'s vectors "
                    "but serves another model's"
                )
            await self._ensure_vector_index(db, len(query.vector))
            allowed: list[int] | None = None
            if query.filter is not None:
                rows = await db.execute(
                    select(KbDocument.pk, KbDocument.labels).where(
                        KbDocument.knowledge_base_pk.in_([b.pk for b in bases])
                    )
                )
                allowed = [pk for pk, labels in rows if matches(query.filter, labels or {})]
                if not allowed:
                    return []
            pool = top_k if query.mode != "hybrid" else max(top_k * 4, 20)
            vector_ids: list[tuple[int, float]] = []
            text_ids: list[tuple[int, float]] = []
            if query.mode in ("vector", "hybrid"):
                vector_ids = await self._vector_ranking(db, bases, query, pool, allowed)
            if query.mode in ("text", "hybrid") and terms(query.text):
                text_ids = await self._text_ranking(db, bases, query.text, pool, allowed)
            if query.mode == "hybrid":
                ranked = fuse([(vector_ids, HYBRID_VECTOR_WEIGHT), (text_ids, 1 - HYBRID_VECTOR_WEIGHT)])[
                    :top_k
                ]
            else:
                ranked = (vector_ids or text_ids)[:top_k]
            return await self._hits(db, bases, ranked)

    async def _vector_ranking(
        self,
        db: AsyncSession,
        bases: Sequence[KnowledgeBase],
        query: SearchQuery,
        pool: int,
        allowed: list[int] | None,
    ) -> list[tuple[int, float]]:
        if self._postgres:
            return await self._pgvector_ranking(db, bases, query, pool, allowed)
        return await self._numpy_ranking(db, bases, query.vector, pool, allowed)

    async def _pgvector_ranking(
        self,
        db: AsyncSession,
        bases: Sequence[KnowledgeBase],
        query: SearchQuery,
        pool: int,
        allowed: list[int] | None,
    ) -> list[tuple[int, float]]:
        """Nearest chunks by pgvector's cosine distance: through this dimension's HNSW index, or
        exactly (asked for, or a metadata filter: the index would return its nearest rows before
        the filter, maybe none of the allowed ones)."""
        dimensions = len(query.vector)
        exact = query.exact or allowed is not None
        scope = _scope(bases)
        distance = f"(embedding::vector({dimensions})) <=> CAST(:query AS real[])::vector({dimensions})"
        # No index can serve a sum: the planner then scans the rows that pass the conditions.
        order = f"({distance}) + 0" if exact else distance
        if not exact:
            ef_search = min(1000, max(MIN_EF_SEARCH, pool * EF_SEARCH_FACTOR))
            await db.execute(text(f"SET LOCAL hnsw.ef_search = {ef_search}"))
        params: dict[str, Any] = {"query": list(query.vector), "pool": pool}
        only = ""
        if allowed is not None:
            only = "AND document_pk = ANY(:allowed)"
            params["allowed"] = allowed
        rows = await db.execute(
            text(
                f"SELECT id, {distance} AS distance FROM kb_chunks "
                f"WHERE dimensions = {dimensions} AND ({scope}) AND {_shown('kb_chunks.')} {only} "
                f"ORDER BY {order} LIMIT :pool"
            ),
            params,
        )
        return [(int(chunk_id), 1.0 - float(d)) for chunk_id, d in rows]

    async def _numpy_ranking(
        self,
        db: AsyncSession,
        bases: Sequence[KnowledgeBase],
        vector: Sequence[float],
        pool: int,
        allowed: list[int] | None,
    ) -> list[tuple[int, float]]:
        """Nearest chunks by cosine similarity, exactly, over each knowledge base's vectors as one
        normalised matrix (kept until this store changes its chunks)."""
        import numpy as np

        ids_parts, matrix_parts = [], []
        for base in bases:
            key = (base.pk, base.serving_generation, len(vector))
            cached = self._matrices.get(key)
            if cached is None:
                rows = (
                    await db.execute(
                        select(KbChunk.id, KbChunk.document_pk, KbChunk.embedding)
                        .join(KbDocument, KbDocument.pk == KbChunk.document_pk)
                        .where(
                            KbChunk.knowledge_base_pk == base.pk,
                            KbChunk.generation == base.serving_generation,
                            KbDocument.indexed_generation >= KbChunk.generation,
                            KbChunk.dimensions == len(vector),
                        )
                    )
                ).all()
                ids = np.array([[r[0], r[1]] for r in rows], dtype=np.int64).reshape(-1, 2)
                matrix = (
                    np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(
                        len(rows), len(vector)
                    )
                    if rows
                    else np.zeros((0, len(vector)), dtype=np.float32)
                )
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = matrix / np.maximum(norms, 1e-12)
                cached = (ids, matrix)
                self._matrices[key] = cached
            ids_parts.append(cached[0])
            matrix_parts.append(cached[1])
        ids = np.concatenate(ids_parts)
        matrix = np.concatenate(matrix_parts)
        if allowed is not None:
            keep = np.isin(ids[:, 1], np.array(allowed, dtype=np.int64))
            ids, matrix = ids[keep], matrix[keep]
        if not len(ids):
            return []
        q = np.asarray(vector, dtype=np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        similarity = matrix @ q
        count = min(pool, len(similarity))
        best = np.argpartition(-similarity, count - 1)[:count]
        best = best[np.argsort(-similarity[best], kind="stable")]
        return [(int(ids[i, 0]), float(similarity[i])) for i in best]

    def _forget_vectors(self, base_pk: int) -> None:
        for key in [k for k in self._matrices if k[0] == base_pk]:
            del self._matrices[key]

    async def _text_ranking(
        self,
        db: AsyncSession,
        bases: Sequence[KnowledgeBase],
        query_text: str,
        pool: int,
        allowed: list[int] | None,
    ) -> list[tuple[int, float]]:
        """Chunks sharing the query's terms (any of them), best first: ts_rank_cd on PostgreSQL,
        bm25 on SQLite (lower is better there; hits carry higher-is-better scores)."""
        words = terms(query_text)
        params: dict[str, Any] = {"pool": pool}
        only = ""
        if allowed is not None:
            if self._postgres:
                only, params["allowed"] = "AND c.document_pk = ANY(:allowed)", allowed
            else:
                only = f"AND c.document_pk IN ({','.join(str(int(pk)) for pk in allowed)})"
        scope = _scope(bases, "c.")
        if self._postgres:
            params["query"] = _tsquery(words)
            sql = (
                "SELECT c.id, ts_rank_cd(c.terms, CAST(:query AS tsquery)) AS score FROM kb_chunks c "
                f"WHERE ({scope}) AND {_shown('c.')} {only} AND c.terms @@ CAST(:query AS tsquery) "
                "ORDER BY score DESC, c.id LIMIT :pool"
            )
            sign = 1.0
        else:
            params["query"] = _fts5_query(words)
            sql = (
                "SELECT c.id, bm25(kb_chunks_fts) AS score FROM kb_chunks_fts "
                "JOIN kb_chunks c ON c.id = kb_chunks_fts.rowid "
                f"WHERE kb_chunks_fts MATCH :query AND ({scope}) AND {_shown('c.')} {only} "
                "ORDER BY score, c.id LIMIT :pool"
            )
            sign = -1.0
        rows = await db.execute(text(sql), params)
        return [(int(chunk_id), sign * float(score)) for chunk_id, score in rows]

    @staticmethod
    async def _hits(
        db: AsyncSession, bases: Sequence[KnowledgeBase], ranked: Sequence[tuple[int, float]]
    ) -> list[Hit]:
        if not ranked:
            return []
        by_pk = {b.pk: b for b in bases}
        rows = await db.execute(
            select(KbChunk, KbDocument)
            .join(KbDocument, KbDocument.pk == KbChunk.document_pk)
            .where(KbChunk.id.in_([chunk_id for chunk_id, _ in ranked]))
        )
        found = {chunk.id: (chunk, document) for chunk, document in rows}
        hits = []
        for chunk_id, score in ranked:
            if chunk_id not in found:
                continue
            chunk, document = found[chunk_id]
            hits.append(
                Hit(
                    knowledge_base_id=by_pk[chunk.knowledge_base_pk].id,
                    document_id=document.id,
                    file_id=document.file_id or "",
                    title=document.title,
                    position=chunk.position,
                    text=chunk.text,
                    start=chunk.start,
                    end=chunk.end,
                    score=score,
                    metadata=document.labels or {},
                )
            )
        return hits


def _scope(bases: Sequence[KnowledgeBase], prefix: str = "") -> str:
    """SQL for "a chunk of one of these knowledge bases' serving generations": literal integers of
    the store's own rows (a partial index matches only literal predicates)."""
    return " OR ".join(
        f"({prefix}knowledge_base_pk = {int(b.pk)} AND {prefix}generation = {int(b.serving_generation)})"
        for b in bases
    )


def _shown(prefix: str) -> str:
    """SQL for "the chunk's document has finished its generation": a document's chunks are written
    hidden and all shown at once when FinishDocument sets its indexed_generation."""
    return (
        f"EXISTS (SELECT 1 FROM kb_documents d WHERE d.pk = {prefix}document_pk "
        f"AND d.indexed_generation >= {prefix}generation)"
    )


def metadata_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

"""Schemas of files and knowledge bases: OpenAI's (/v1/files, /v1/vector_stores) and the mesh's own
(/api/v1/knowledge), each built from the store's and orchestrator's messages in one place."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.gateway.errors import field_error

SearchMode = Literal["vector", "text", "hybrid"]
SEARCH_MODES = {
    "vector": common_pb2.KNOWLEDGE_SEARCH_MODE_VECTOR,
    "text": common_pb2.KNOWLEDGE_SEARCH_MODE_TEXT,
    "hybrid": common_pb2.KNOWLEDGE_SEARCH_MODE_HYBRID,
}
Metadata = dict[str, str]
# A document's attributes: what search filters compare (OpenAI allows strings, numbers, booleans).
Attributes = dict[str, str | int | float | bool]


def _seconds(stamp: Any) -> int:
    return int(stamp.seconds)


def _attributes(document_json: str) -> dict[str, Any]:
    return json.loads(document_json) if document_json else {}


# OpenAI: files


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None
    status_details: str | None = None

    @classmethod
    def from_proto(cls, stored: store_pb2.StoredFile) -> FileObject:
        return cls(
            id=stored.id,
            bytes=stored.bytes,
            created_at=_seconds(stored.created_at),
            filename=stored.filename,
            purpose=stored.purpose,
            expires_at=_seconds(stored.expires_at) if stored.HasField("expires_at") else None,
        )


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# OpenAI: vector stores


class FileCounts(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int = 0
    total: int


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["in_progress", "completed", "expired"]
    expires_after: None = None
    expires_at: None = None
    last_active_at: int | None = None
    metadata: Metadata
    # The mesh's: the embedding model its documents are searched with.
    embedding_model: str

    @classmethod
    def from_proto(cls, base: store_pb2.KnowledgeBase) -> VectorStore:
        counts = base.documents
        busy = counts.queued + counts.in_progress
        return cls(
            id=base.id,
            created_at=_seconds(base.created_at),
            name=base.name,
            usage_bytes=base.bytes,
            file_counts=FileCounts(
                in_progress=busy,
                completed=counts.completed,
                failed=counts.failed,
                cancelled=counts.cancelled,
                total=counts.total,
            ),
            status="in_progress" if busy else "completed",
            last_active_at=_seconds(base.updated_at),
            metadata=dict(base.metadata),
            embedding_model=base.serving_model,
        )


class StaticChunking(BaseModel):
    # OpenAI counts tokens; the mesh's chunks are characters, about four to a token of English.
    max_chunk_size_tokens: int = Field(default=250, ge=25, le=2000)
    chunk_overlap_tokens: int = Field(default=50, ge=0)


class ChunkingStrategy(BaseModel):
    type: Literal["auto", "static"] = "auto"
    static: StaticChunking | None = None

    def characters(self) -> tuple[int, int | None]:
        """(chunk size, overlap) in characters; (0, None): the store's defaults."""
        if self.type == "static" and self.static is not None:
            return self.static.max_chunk_size_tokens * 4, self.static.chunk_overlap_tokens * 4
        return 0, None


class CreateVectorStoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    file_ids: list[str] = Field(default_factory=list, max_length=500)
    metadata: Metadata = Field(default_factory=dict)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: dict[str, Any] | None = None
    description: str = ""
    # The mesh's: an embedding model of the registry (its default embedding model when omitted).
    embedding_model: str = ""


class UpdateVectorStoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    metadata: Metadata | None = None
    expires_after: dict[str, Any] | None = None
    # The mesh's: re-embeds every document with this model (searches keep the old one until done).
    embedding_model: str | None = None


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"] = "vector_store.deleted"
    deleted: bool = True


class VectorStoreList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStore]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class LastError(BaseModel):
    code: str
    message: str


class VectorStoreFile(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    usage_bytes: int = 0
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    last_error: LastError | None = None
    chunking_strategy: dict[str, Any] = Field(default_factory=lambda: {"type": "other"})
    attributes: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_proto(cls, document: store_pb2.KbDocument) -> VectorStoreFile:
        status = "in_progress" if document.status == "queued" else document.status
        error = (
            LastError(code="server_error", message=document.error.message)
            if document.HasField("error")
            else None
        )
        return cls(
            # OpenAI's vector store file is named by its file's id.
            id=document.file_id or document.id,
            created_at=_seconds(document.created_at),
            vector_store_id=document.knowledge_base_id,
            status=status,
            last_error=error if status == "failed" else None,
            attributes=_attributes(document.metadata_json),
        )


class AttachFileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str = Field(min_length=1)
    attributes: Attributes = Field(default_factory=dict)
    chunking_strategy: ChunkingStrategy | None = None


class CreateFileBatchRequest(BaseModel):
    """A batch of files to attach: `file_ids` (with one `attributes` for all), or `files`, each with
    its own attributes."""

    model_config = ConfigDict(extra="forbid")

    file_ids: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=2000)] | None
    ) = None
    files: Annotated[list[AttachFileRequest], Field(min_length=1, max_length=2000)] | None = None
    attributes: Attributes = Field(default_factory=dict)
    chunking_strategy: ChunkingStrategy | None = None

    @model_validator(mode="after")
    def _one_list(self) -> CreateFileBatchRequest:
        if (self.file_ids is None) == (self.files is None):
            raise field_error("file_ids", "send file_ids or files (one of them)")
        return self

    def attachments(self) -> list[AttachFileRequest]:
        if self.files is not None:
            return self.files
        return [
            AttachFileRequest(file_id=file_id, attributes=self.attributes) for file_id in self.file_ids or ()
        ]


class VectorStoreFileBatch(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts

    @classmethod
    def from_proto(cls, batch: store_pb2.FileBatch) -> VectorStoreFileBatch:
        counts = FileCounts(
            in_progress=batch.in_progress,
            completed=batch.completed,
            failed=batch.failed,
            cancelled=batch.cancelled,
            total=batch.in_progress + batch.completed + batch.failed + batch.cancelled,
        )
        return cls(
            id=batch.id,
            created_at=_seconds(batch.created_at),
            vector_store_id=batch.knowledge_base_id,
            status=batch.status,
            file_counts=counts,
        )


class VectorStoreFileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VectorStoreFile]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"] = "vector_store.file.deleted"
    deleted: bool = True


class RankingOptions(BaseModel):
    ranker: str = "auto"
    score_threshold: float = 0.0


class VectorStoreSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | list[str]
    filters: dict[str, Any] | None = None
    max_num_results: int = Field(default=10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = False
    # The mesh's: how chunks are ranked (OpenAI's own search is hybrid too).
    mode: SearchMode = "hybrid"

    def text(self) -> str:
        return self.query if isinstance(self.query, str) else " ".join(self.query)


class SearchContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    content: list[SearchContent]

    @classmethod
    def from_proto(cls, hit: common_pb2.KnowledgeHit) -> SearchResult:
        return cls(
            file_id=hit.file_id or hit.document_id,
            filename=hit.title,
            score=hit.score,
            attributes=_attributes(hit.metadata_json),
            content=[SearchContent(text=hit.text)],
        )


class VectorStoreSearchPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None


# The mesh's own API


class KnowledgeBaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    description: str = ""
    metadata: Metadata = Field(default_factory=dict)
    # An embedding model of the registry; the registry's default embedding model when omitted.
    embedding_model: str = ""
    # Characters per chunk (100-8000; 1000 when omitted) and shared by neighbouring chunks.
    chunk_size: int = Field(default=0, ge=0, le=8000)
    chunk_overlap: int | None = Field(default=None, ge=0)


class KnowledgeBaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    description: str | None = None
    metadata: Metadata | None = None
    # A new model re-embeds every document as jobs; searches keep the old one until all are done.
    embedding_model: str | None = None


class DocumentCounts(BaseModel):
    queued: int
    in_progress: int
    completed: int
    failed: int
    total: int


class KnowledgeBaseView(BaseModel):
    id: str
    name: str
    description: str
    metadata: Metadata
    embedding_model: str
    serving_model: str
    generation: int
    serving_generation: int
    chunk_size: int
    chunk_overlap: int
    documents: DocumentCounts
    bytes: int
    created_at: int
    updated_at: int

    @classmethod
    def from_proto(cls, base: store_pb2.KnowledgeBase) -> KnowledgeBaseView:
        counts = base.documents
        return cls(
            id=base.id,
            name=base.name,
            description=base.description,
            metadata=dict(base.metadata),
            embedding_model=base.embedding_model,
            serving_model=base.serving_model,
            generation=base.generation,
            serving_generation=base.serving_generation,
            chunk_size=base.chunk_size,
            chunk_overlap=base.chunk_overlap,
            documents=DocumentCounts(
                queued=counts.queued,
                in_progress=counts.in_progress,
                completed=counts.completed,
                failed=counts.failed,
                total=counts.total,
            ),
            bytes=base.bytes,
            created_at=_seconds(base.created_at),
            updated_at=_seconds(base.updated_at),
        )


class KnowledgeBaseList(BaseModel):
    data: list[KnowledgeBaseView]
    has_more: bool


class UpdatedKnowledgeBase(BaseModel):
    knowledge_base: KnowledgeBaseView
    # Ingestion jobs re-embedding documents with a new model.
    job_ids: list[str]


class DocumentBody(BaseModel):
    """A document: `text` given here, or `file_id` of an upload (POST /v1/files)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    file_id: str | None = None
    title: str = Field(default="", max_length=500)
    # Of `text`: text/plain, text/markdown or text/html.
    content_type: str = "text/plain"
    metadata: Attributes = Field(default_factory=dict)


class DocumentAdded(BaseModel):
    document_id: str
    # False: the same text was there already; nothing was queued.
    created: bool
    job_id: str


class DocumentView(BaseModel):
    id: str
    knowledge_base_id: str
    file_id: str | None
    title: str
    content_type: str
    content_hash: str
    metadata: dict[str, Any]
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"]
    # Progress of the generation being indexed.
    chunk_count: int
    chunks_written: int
    error: LastError | None
    job_id: str | None
    created_at: int
    updated_at: int

    @classmethod
    def from_proto(cls, document: store_pb2.KbDocument) -> DocumentView:
        return cls(
            id=document.id,
            knowledge_base_id=document.knowledge_base_id,
            file_id=document.file_id or None,
            title=document.title,
            content_type=document.content_type,
            content_hash=document.content_hash,
            metadata=_attributes(document.metadata_json),
            status=document.status,
            chunk_count=document.chunk_count,
            chunks_written=document.chunks_written,
            error=LastError(code=document.error.code, message=document.error.message)
            if document.HasField("error")
            else None,
            job_id=document.job_id or None,
            created_at=_seconds(document.created_at),
            updated_at=_seconds(document.updated_at),
        )


class DocumentList(BaseModel):
    data: list[DocumentView]
    has_more: bool


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    knowledge_bases: list[str] = Field(min_length=1, max_length=20)
    query: str = Field(min_length=1, max_length=10_000)
    mode: SearchMode = "hybrid"
    top_k: int = Field(default=10, ge=1, le=50)
    # OpenAI's attribute filter: {"type": "eq", "key": …, "value": …}, or {"type": "and"/"or", "filters": […]}.
    filter: dict[str, Any] | None = None
    # Exact nearest neighbours instead of the approximate index (PostgreSQL).
    exact: bool = False


class Hit(BaseModel):
    knowledge_base_id: str
    document_id: str
    file_id: str | None
    title: str
    chunk: int
    text: str
    start: int
    end: int
    score: float
    metadata: dict[str, Any]

    @classmethod
    def from_proto(cls, hit: common_pb2.KnowledgeHit) -> Hit:
        return cls(
            knowledge_base_id=hit.knowledge_base_id,
            document_id=hit.document_id,
            file_id=hit.file_id or None,
            title=hit.title,
            chunk=hit.chunk_position,
            text=hit.text,
            start=hit.start,
            end=hit.end,
            score=hit.score,
            metadata=_attributes(hit.metadata_json),
        )


class SearchAnswer(BaseModel):
    hits: list[Hit]
    request_id: str

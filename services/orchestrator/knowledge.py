"""Knowledge bases in the orchestrator: documents read and queued for ingestion, ingestion jobs
(chunk → embed in batches → index), searches (the query embedded by the knowledge base's serving
model), and retrieval for a generation (the chunks found placed in its prompt, numbered).

Ingestion is resumable: chunking is deterministic, the store keeps the chunks already written, and a
job that starts again (another attempt, or another worker after this one died) continues after the
last chunk written; a document becomes searchable only when all its chunks are written.
"""

from __future__ import annotations

import html.parser
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import InvalidArgument, NotFound, UnsupportedFileType
from services.common.registry import DEFAULT_EMBEDDING_MODEL, Registry
from services.store.client import StoreClient

log = logging.getLogger("llmmesh.orchestrator.knowledge")

# Chunks embedded per Embed call and written per PutChunks call.
EMBED_BATCH = 16
DEFAULT_RETRIEVED = 5
RRF_K = 60
_MODES = {
    common_pb2.KNOWLEDGE_SEARCH_MODE_UNSPECIFIED: common_pb2.KNOWLEDGE_SEARCH_MODE_HYBRID,
}


class NotAnEmbeddingModel(InvalidArgument):
    code = "not_an_embedding_model"


class UnreadableFile(InvalidArgument):
    code = "unreadable_file"


# Reading documents

TEXT_TYPES = {
    "text/plain": "text/plain",
    "text/markdown": "text/markdown",
    "text/x-markdown": "text/markdown",
    "text/html": "text/html",
    "application/pdf": "application/pdf",
}
_BY_SUFFIX = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}


def document_type(filename: str, content_type: str) -> str:
    """The kind of document a file is, from its name's suffix or else its content type."""
    by_name = _BY_SUFFIX.get(PurePosixPath(filename).suffix.lower())
    if by_name:
        return by_name
    declared = content_type.split(";")[0].strip().lower()
    if declared in TEXT_TYPES:
        return TEXT_TYPES[declared]
    raise UnsupportedFileType(
        f"cannot read the text of {filename or 'this file'} ({declared or 'no content type'}): "
        "knowledge bases take text/plain, text/markdown, text/html and application/pdf "
        "(.txt, .md, .html, .pdf)"
    )


class _HtmlText(html.parser.HTMLParser):
    """The visible text of an HTML page: script and style dropped, blocks on their own lines."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def extract_text(content: bytes, kind: str) -> str:
    """The text of a document of `kind` (see document_type)."""
    if kind == "application/pdf":
        try:
            import pypdf
        except ImportError:
            raise UnsupportedFileType(
                "PDF documents need the pypdf package: pip install 'llm-mesh[pdf]'"
            ) from None
        try:
            reader = pypdf.PdfReader(io.BytesIO(content))
            return "\n\n".join(page.extract_text() or "" for page in reader.pages)
        except Exception:  # pypdf raises many kinds of error for a broken file
            raise UnreadableFile("the PDF could not be read") from None
    try:
        decoded = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFile("a text document must be UTF-8") from None
    if kind == "text/html":
        parser = _HtmlText()
        parser.feed(decoded)
        parser.close()
        return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()
    return decoded


# Chunking

# Where a chunk may end, best first: a paragraph, a line, a sentence (Western or Japanese), a word.
# (Japanese sentences end at U+3002, U+FF01 and U+FF1F, with no space after them.)
_BREAKS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile("[.!?](\\s|$)|[\u3002\uff01\uff1f]"),
    re.compile(r"\s"),
)


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    text: str


def chunk_text(text: str, size: int, overlap: int) -> list[Chunk]:
    """Pieces of at most `size` characters covering the text, each ending at the best break in its
    second half, the next starting `overlap` characters before (at a word start where one is near).
    Deterministic: the same text and settings give the same chunks (a resumed job relies on it)."""
    chunks: list[Chunk] = []
    start, length = 0, len(text)
    while start < length:
        while start < length and text[start].isspace():
            start += 1
        if start >= length:
            break
        end = min(start + size, length)
        if end < length:
            window = text[start + size // 2 : end]
            for pattern in _BREAKS:
                found = [m.end() for m in pattern.finditer(window)]
                if found:
                    end = start + size // 2 + found[-1]
                    break
        piece = text[start:end].rstrip()
        if piece:
            chunks.append(Chunk(start, start + len(piece), piece))
        if end >= length:
            break
        following = max(end - overlap, start + 1)
        space = text.find(" ", following, end)
        start = space + 1 if overlap and 0 <= space < end - 1 else following
    return chunks


# Prompts with sources

CONTEXT_HEADER = (
    "Answer from the numbered sources below when they are relevant, and cite each source you use "
    "by its number in brackets, like [1]. If the sources do not hold the answer, say so."
)


def context_block(hits: Sequence[common_pb2.KnowledgeHit]) -> str:
    """The system-instruction text that gives the model the retrieved chunks, numbered from 1."""
    sources = "\n\n".join(f"[{n}] {hit.title}\n{hit.text}" for n, hit in enumerate(hits, start=1))
    return f"{CONTEXT_HEADER}\n\nSources:\n\n{sources}"


def fuse(groups: Sequence[Sequence[common_pb2.KnowledgeHit]], top_k: int) -> list[common_pb2.KnowledgeHit]:
    """Hits of searches over knowledge bases of different models, merged by reciprocal rank."""
    if len(groups) == 1:
        return list(groups[0])[:top_k]
    scored: list[tuple[float, int, common_pb2.KnowledgeHit]] = []
    for group in groups:
        for rank, hit in enumerate(group, start=1):
            scored.append((1.0 / (RRF_K + rank), len(scored), hit))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [hit for _, _, hit in scored[:top_k]]


class KnowledgeBases:
    """Knowledge base work that needs models or the job queue; the rest is the store's."""

    def __init__(self, store: StoreClient, registry: Registry, embed: Any, enqueue: Any) -> None:
        self._store = store
        self._registry = registry
        # embed(model, texts) -> inference EmbedResponse; enqueue(kind, request, idempotency_key) -> job id
        self._embed = embed
        self._enqueue = enqueue

    def default_model(self) -> str:
        if DEFAULT_EMBEDDING_MODEL in self._registry.models:
            return DEFAULT_EMBEDDING_MODEL
        embedders = [n for n, m in self._registry.models.items() if m.task == "embed"]
        if not embedders:
            raise NotAnEmbeddingModel("the registry has no embedding model (task: embed) for knowledge bases")
        return embedders[0]

    def check_model(self, model: str) -> str:
        config = self._registry.models.get(model)
        if config is None or config.task != "embed":
            embedders = ", ".join(sorted(n for n, m in self._registry.models.items() if m.task == "embed"))
            what = "is not in the registry" if config is None else "generates text; it makes no embeddings"
            raise NotAnEmbeddingModel(
                f"model {model!r} {what}; embedding models: {embedders or 'none configured'}"
            )
        return model

    async def create(self, request: orchestrator_pb2.CreateKnowledgeBaseRequest) -> str:
        model = self.check_model(request.embedding_model or self.default_model())
        created = await self._store.create_knowledge_base(
            store_pb2.CreateKnowledgeBaseRequest(
                name=request.name,
                description=request.description,
                metadata=dict(request.metadata),
                embedding_model=model,
                chunk_size=request.chunk_size,
                chunk_overlap=request.chunk_overlap if request.HasField("chunk_overlap") else None,
            )
        )
        return created.knowledge_base.id

    async def update(self, request: orchestrator_pb2.UpdateKnowledgeBaseRequest) -> list[str]:
        if request.HasField("embedding_model"):
            self.check_model(request.embedding_model)
        answer = await self._store.update_knowledge_base(
            store_pb2.UpdateKnowledgeBaseRequest(
                knowledge_base_id=request.knowledge_base_id,
                name=request.name if request.HasField("name") else None,
                description=request.description if request.HasField("description") else None,
                set_metadata=request.set_metadata,
                metadata=dict(request.metadata),
                embedding_model=request.embedding_model if request.HasField("embedding_model") else None,
            )
        )
        generation = answer.knowledge_base.generation
        return [await self._queue_ingest(doc, generation) for doc in answer.reindex_document_ids]

    async def add_document(
        self, request: orchestrator_pb2.AddKnowledgeDocumentRequest
    ) -> orchestrator_pb2.AddKnowledgeDocumentResponse:
        if request.WhichOneof("source") == "file_id":
            upload = await self._store.get_file_content(
                store_pb2.GetFileContentRequest(file_id=request.file_id)
            )
            kind = document_type(upload.file.filename, upload.file.content_type)
            text = extract_text(upload.content, kind)
            title = request.title or upload.file.filename
            file_id = upload.file.id
        else:
            kind = document_type("", request.content_type or "text/plain")
            if kind == "application/pdf":
                raise UnsupportedFileType("a PDF arrives as an uploaded file, not as text")
            text = extract_text(request.text.encode(), kind)
            title, file_id = request.title, ""
        added = await self._store.add_document(
            store_pb2.AddDocumentRequest(
                knowledge_base_id=request.knowledge_base_id,
                title=title,
                content_type=kind,
                text=text,
                metadata_json=request.metadata_json,
                file_id=file_id,
            )
        )
        document = added.document
        if not added.created:
            return orchestrator_pb2.AddKnowledgeDocumentResponse(
                document_id=document.id, created=False, job_id=document.job_id
            )
        base = await self._store.get_knowledge_base(
            store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=request.knowledge_base_id)
        )
        job_id = await self._queue_ingest(document.id, base.knowledge_base.generation)
        return orchestrator_pb2.AddKnowledgeDocumentResponse(
            document_id=document.id, created=True, job_id=job_id
        )

    async def _queue_ingest(self, document_id: str, generation: int) -> str:
        job_id: str = await self._enqueue(
            common_pb2.JOB_KIND_INGEST,
            {"document_id": document_id, "generation": generation},
            f"ingest:{document_id}:{generation}",
        )
        await self._store.set_document_job(
            store_pb2.SetDocumentJobRequest(document_id=document_id, job_id=job_id)
        )
        return job_id

    async def ingest(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ingestion job: chunk the document, embed and write the chunks not written yet, show
        them. The result says how many chunks the document has and how many this attempt wrote."""
        document_id = request["document_id"]
        work = await self._store.get_indexing_work(store_pb2.GetIndexingWorkRequest(document_id=document_id))
        if work.done or work.generation != request.get("generation", work.generation):
            # Indexed already, or its knowledge base moved on to a newer generation (a newer job does it).
            return {"document_id": document_id, "chunks": work.document.chunk_count, "written": 0}
        chunks = chunk_text(work.text, work.chunk_size, work.chunk_overlap)
        written = 0
        for first in range(work.chunks_written, len(chunks), EMBED_BATCH):
            batch = chunks[first : first + EMBED_BATCH]
            embedded = await self._embed(work.embedding_model, [c.text for c in batch])
            await self._store.put_chunks(
                store_pb2.PutChunksRequest(
                    document_id=document_id,
                    generation=work.generation,
                    chunk_total=len(chunks),
                    chunks=[
                        store_pb2.NewChunk(
                            position=first + i,
                            text=c.text,
                            start=c.start,
                            end=c.end,
                            embedding=list(vector.values),
                        )
                        for i, (c, vector) in enumerate(zip(batch, embedded.embeddings, strict=True))
                    ],
                )
            )
            written += len(batch)
        await self._store.finish_document(
            store_pb2.FinishDocumentRequest(
                document_id=document_id, generation=work.generation, chunk_count=len(chunks)
            )
        )
        log.info(
            "document indexed",
            extra={"document_id": document_id, "chunks": len(chunks), "written": written},
        )
        return {"document_id": document_id, "chunks": len(chunks), "written": written}

    async def progress(self, request: dict[str, Any]) -> orchestrator_pb2.JobProgress | None:
        """An ingestion job's progress: its document's chunks written of all (None: the document is gone)."""
        try:
            document = (
                await self._store.get_document(
                    store_pb2.GetDocumentRequest(document_id=request["document_id"])
                )
            ).document
        except NotFound:
            return None
        return orchestrator_pb2.JobProgress(
            done=document.chunks_written, total=document.chunk_count, unit="chunks"
        )

    async def fail(self, request: dict[str, Any], code: str, message: str) -> None:
        """A job that gave up: its document says why."""
        await self._store.fail_document(
            store_pb2.FailDocumentRequest(
                document_id=request["document_id"], error=common_pb2.JobError(code=code, message=message)
            )
        )

    async def search(
        self,
        knowledge_base_ids: Sequence[str],
        query: str,
        mode: common_pb2.KnowledgeSearchMode,
        top_k: int,
        filter_json: str = "",
        exact: bool = False,
    ) -> list[common_pb2.KnowledgeHit]:
        """Hits over knowledge bases, each searched with its serving model's embedding of the query;
        knowledge bases of different models are searched apart and their hits fused by rank."""
        if not knowledge_base_ids:
            raise InvalidArgument("a search needs at least one knowledge base")
        if not query.strip():
            raise InvalidArgument("a search needs a query")
        mode = _MODES.get(mode, mode)
        by_model: dict[str, list[str]] = {}
        for base_id in dict.fromkeys(knowledge_base_ids):
            base = await self._store.get_knowledge_base(
                store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base_id)
            )
            by_model.setdefault(base.knowledge_base.serving_model, []).append(base_id)
        groups = []
        for model, ids in by_model.items():
            vector: list[float] = []
            if mode != common_pb2.KNOWLEDGE_SEARCH_MODE_TEXT:
                vector = list((await self._embed(model, [query])).embeddings[0].values)
            answer = await self._store.search_chunks(
                store_pb2.SearchChunksRequest(
                    knowledge_base_ids=ids,
                    embedding_model=model,
                    query_vector=vector,
                    query_text=query,
                    mode=mode,
                    top_k=top_k,
                    filter_json=filter_json,
                    exact=exact,
                )
            )
            groups.append(list(answer.hits))
        return fuse(groups, top_k or 10)

    async def retrieve(
        self, options: orchestrator_pb2.KnowledgeOptions, query: str
    ) -> list[common_pb2.KnowledgeHit]:
        """The chunks a generation's prompt gets."""
        return await self.search(
            options.knowledge_base_ids,
            query,
            options.mode,
            options.top_k or DEFAULT_RETRIEVED,
            options.filter_json,
        )


def with_sources(
    spec: orchestrator_pb2.GenerationSpec, hits: Sequence[common_pb2.KnowledgeHit]
) -> orchestrator_pb2.GenerationSpec:
    """The spec with the retrieved chunks in its system instruction (after the caller's own)."""
    grounded = orchestrator_pb2.GenerationSpec()
    grounded.CopyFrom(spec)
    grounded.ClearField("knowledge")
    if hits:
        block = context_block(hits)
        grounded.system = f"{spec.system}\n\n{block}" if spec.system else block
    return grounded

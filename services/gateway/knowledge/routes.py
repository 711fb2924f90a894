"""Transport for files and knowledge bases: OpenAI's /v1/files and /v1/vector_stores (so the openai
SDK works unchanged, `create_and_poll` included) and the mesh's own /api/v1/knowledge. Reads and
deletions go to the store; what needs a model or the job queue (creating with a model, adding a
document, re-embedding, searching) goes to the orchestrator."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import grpc
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from llmmesh.orchestrator.v1 import orchestrator_pb2
from llmmesh.store.v1 import store_pb2

from services.common.errors import FileTooLarge, InvalidArgument, MeshError
from services.gateway.batches.translation import batch_file, check_upload
from services.gateway.calls import orchestrator, store
from services.gateway.errors import error_responses, request_id_of
from services.gateway.knowledge.protocol import (
    SEARCH_MODES,
    AttachFileRequest,
    CreateFileBatchRequest,
    CreateVectorStoreRequest,
    DocumentAdded,
    DocumentBody,
    DocumentList,
    DocumentView,
    FileDeleted,
    FileList,
    FileObject,
    Hit,
    KnowledgeBaseBody,
    KnowledgeBaseList,
    KnowledgeBaseUpdate,
    KnowledgeBaseView,
    SearchAnswer,
    SearchBody,
    SearchResult,
    UpdatedKnowledgeBase,
    UpdateVectorStoreRequest,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreList,
    VectorStoreSearchPage,
    VectorStoreSearchRequest,
)

files_router = APIRouter(prefix="/v1/files", tags=["files"])
vector_stores_router = APIRouter(prefix="/v1/vector_stores", tags=["vector stores"])
router = APIRouter(prefix="/knowledge", tags=["knowledge"])

# How soon the openai SDK's create_and_poll asks again (it reads this header; its default is 1 s).
POLL_AFTER_MS = "200"
Order = Literal["asc", "desc"]
_ERRORS = error_responses(400, 401, 404)
_UPLOAD_ERRORS = error_responses(
    descriptions={
        400: "A malformed upload or an unknown purpose",
        401: "Missing or invalid API key",
        413: "The file is larger than GATEWAY_MAX_UPLOAD_BYTES (the message names the limit)",
    }
)
_ATTACH_ERRORS = error_responses(
    descriptions={
        400: "A malformed request",
        404: "No such vector store or file in the caller's project",
        413: "The document's text is over a limit (the message names it)",
        415: "The file's type is not one whose text the mesh reads (.txt, .md, .html, .pdf)",
    }
)


def _max_upload_bytes(request: Request) -> int:
    limit: int = request.app.state.settings.max_upload_bytes
    return limit


# OpenAI: files


@files_router.post("", response_model=FileObject, responses=_UPLOAD_ERRORS, summary="Upload a file")
async def create_file(
    request: Request, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
) -> FileObject:
    """A file kept in the store, in the caller's project: a document for a vector store
    (purpose `assistants`), a batch's input (`batch`), or data of the caller's (`user_data`)."""
    limit = _max_upload_bytes(request)
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise FileTooLarge(f"a file is at most {limit} bytes (GATEWAY_MAX_UPLOAD_BYTES)")
    if purpose == "batch":
        check_upload(content)
    answer = await store(request).create_file(
        store_pb2.CreateFileRequest(
            filename=file.filename or "upload",
            purpose=purpose,
            content_type=file.content_type or "application/octet-stream",
            content=content,
        )
    )
    return FileObject.from_proto(answer.file)


@files_router.get("", response_model=FileList, responses=_ERRORS, summary="List files")
async def list_files(
    request: Request,
    purpose: str = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: str = "",
    order: Order = "desc",
) -> FileList:
    answer = await store(request).list_files(
        store_pb2.ListFilesRequest(purpose=purpose, limit=limit, after=after, ascending=order == "asc")
    )
    data = [FileObject.from_proto(f) for f in answer.files]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=answer.has_more,
    )


@files_router.get("/{file_id}", response_model=FileObject, responses=_ERRORS, summary="Retrieve a file")
async def retrieve_file(file_id: str, request: Request) -> FileObject:
    """A file of the caller's project: one it uploaded, or a batch's output or error file."""
    made = await batch_file(store(request), file_id)
    if made is not None:
        return made[0]
    answer = await store(request).get_file(store_pb2.GetFileRequest(file_id=file_id))
    return FileObject.from_proto(answer.file)


@files_router.get(
    "/{file_id}/content",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    summary="A file's content",
)
async def file_content(file_id: str, request: Request) -> Response:
    made = await batch_file(store(request), file_id)
    if made is not None:
        return Response(made[1], media_type="application/jsonl")
    answer = await store(request).get_file_content(store_pb2.GetFileContentRequest(file_id=file_id))
    return Response(answer.content, media_type=answer.file.content_type or "application/octet-stream")


@files_router.delete("/{file_id}", response_model=FileDeleted, responses=_ERRORS, summary="Delete a file")
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    await store(request).delete_file(store_pb2.DeleteFileRequest(file_id=file_id))
    return FileDeleted(id=file_id)


# OpenAI: vector stores


async def _vector_store(request: Request, base_id: str) -> VectorStore:
    answer = await store(request).get_knowledge_base(
        store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base_id)
    )
    return VectorStore.from_proto(answer.knowledge_base)


async def _attach(request: Request, base_id: str, file_id: str, attributes: dict[str, object]) -> str:
    added = await orchestrator(request).add_knowledge_document(
        orchestrator_pb2.AddKnowledgeDocumentRequest(
            knowledge_base_id=base_id, file_id=file_id, metadata_json=json.dumps(attributes)
        )
    )
    return added.document_id


@vector_stores_router.post(
    "", response_model=VectorStore, responses=_ATTACH_ERRORS, summary="Create a vector store"
)
async def create_vector_store(body: CreateVectorStoreRequest, request: Request) -> VectorStore:
    """A knowledge base; its files (file_ids) are read now and indexed in the background."""
    size, overlap = body.chunking_strategy.characters() if body.chunking_strategy else (0, None)
    created = await orchestrator(request).create_knowledge_base(
        orchestrator_pb2.CreateKnowledgeBaseRequest(
            name=body.name,
            description=body.description,
            metadata=body.metadata,
            embedding_model=body.embedding_model,
            chunk_size=size,
            chunk_overlap=overlap,
        )
    )
    for file_id in body.file_ids:
        await _attach(request, created.knowledge_base_id, file_id, {})
    return await _vector_store(request, created.knowledge_base_id)


@vector_stores_router.get("", response_model=VectorStoreList, responses=_ERRORS, summary="List vector stores")
async def list_vector_stores(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str = "",
    order: Order = "desc",
) -> VectorStoreList:
    answer = await store(request).list_knowledge_bases(
        store_pb2.ListKnowledgeBasesRequest(limit=limit, after=after, ascending=order == "asc")
    )
    data = [VectorStore.from_proto(b) for b in answer.knowledge_bases]
    return VectorStoreList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=answer.has_more,
    )


@vector_stores_router.get(
    "/{vector_store_id}", response_model=VectorStore, responses=_ERRORS, summary="Retrieve a vector store"
)
async def retrieve_vector_store(vector_store_id: str, request: Request) -> VectorStore:
    return await _vector_store(request, vector_store_id)


@vector_stores_router.post(
    "/{vector_store_id}", response_model=VectorStore, responses=_ERRORS, summary="Modify a vector store"
)
async def update_vector_store(
    vector_store_id: str, body: UpdateVectorStoreRequest, request: Request
) -> VectorStore:
    await orchestrator(request).update_knowledge_base(
        orchestrator_pb2.UpdateKnowledgeBaseRequest(
            knowledge_base_id=vector_store_id,
            name=body.name,
            set_metadata=body.metadata is not None,
            metadata=body.metadata or {},
            embedding_model=body.embedding_model,
        )
    )
    return await _vector_store(request, vector_store_id)


@vector_stores_router.delete(
    "/{vector_store_id}",
    response_model=VectorStoreDeleted,
    responses=error_responses(401, 404, 409),
    summary="Delete a vector store",
)
async def delete_vector_store(
    vector_store_id: str, request: Request, force: bool = False
) -> VectorStoreDeleted:
    """Deletes it with its documents; while documents are being indexed only with ?force=true (409)."""
    await store(request).delete_knowledge_base(
        store_pb2.DeleteKnowledgeBaseRequest(knowledge_base_id=vector_store_id, force=force)
    )
    return VectorStoreDeleted(id=vector_store_id)


@vector_stores_router.post(
    "/{vector_store_id}/files",
    response_model=VectorStoreFile,
    responses=_ATTACH_ERRORS,
    summary="Attach a file to a vector store",
)
async def attach_file(
    vector_store_id: str, body: AttachFileRequest, request: Request, response: Response
) -> VectorStoreFile:
    """Reads the file's text now (415 for a type it cannot read) and indexes it in the background: its
    status is in_progress until every chunk is searchable (poll it, or use create_and_poll)."""
    document_id = await _attach(request, vector_store_id, body.file_id, dict(body.attributes))
    answer = await store(request).get_document(
        store_pb2.GetDocumentRequest(knowledge_base_id=vector_store_id, document_id=document_id)
    )
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return VectorStoreFile.from_proto(answer.document)


@vector_stores_router.get(
    "/{vector_store_id}/files",
    response_model=VectorStoreFileList,
    responses=_ERRORS,
    summary="List a vector store's files",
)
async def list_vector_store_files(
    vector_store_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str = "",
    order: Order = "desc",
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None,
) -> VectorStoreFileList:
    return await _file_list(request, vector_store_id, limit, after, order, filter)


async def _file_list(
    request: Request,
    vector_store_id: str,
    limit: int,
    after: str,
    order: Order,
    status: str | None,
    batch_id: str = "",
) -> VectorStoreFileList:
    """One page of a vector store's files (of one file batch's, when named), of one status."""
    answer = await store(request).list_documents(
        store_pb2.ListDocumentsRequest(
            knowledge_base_id=vector_store_id,
            status=status or "",
            limit=limit,
            after=after,
            ascending=order == "asc",
            file_batch_id=batch_id,
        )
    )
    data = [VectorStoreFile.from_proto(d) for d in answer.documents]
    return VectorStoreFileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=answer.has_more,
    )


@vector_stores_router.get(
    "/{vector_store_id}/files/{file_id}",
    response_model=VectorStoreFile,
    responses=_ERRORS,
    summary="Retrieve a vector store file",
)
async def retrieve_vector_store_file(
    vector_store_id: str, file_id: str, request: Request, response: Response
) -> VectorStoreFile:
    answer = await store(request).get_document(
        store_pb2.GetDocumentRequest(knowledge_base_id=vector_store_id, document_id=file_id)
    )
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return VectorStoreFile.from_proto(answer.document)


@vector_stores_router.delete(
    "/{vector_store_id}/files/{file_id}",
    response_model=VectorStoreFileDeleted,
    responses=_ERRORS,
    summary="Remove a file from a vector store",
)
async def delete_vector_store_file(
    vector_store_id: str, file_id: str, request: Request
) -> VectorStoreFileDeleted:
    """Removes the document and its chunks; the uploaded file stays."""
    await store(request).delete_document(
        store_pb2.DeleteDocumentRequest(knowledge_base_id=vector_store_id, document_id=file_id)
    )
    return VectorStoreFileDeleted(id=file_id)


@vector_stores_router.post(
    "/{vector_store_id}/file_batches",
    response_model=VectorStoreFileBatch,
    responses=_ATTACH_ERRORS,
    summary="Attach a batch of files to a vector store",
)
async def create_file_batch(
    vector_store_id: str, body: CreateFileBatchRequest, request: Request, response: Response
) -> VectorStoreFileBatch:
    """Attaches each file as POST …/files does (its text read now: a file the mesh cannot read is
    refused, and the files before it stay attached), then counts them as one batch while they are
    indexed in the background (poll it, or use the SDK's create_and_poll / upload_and_poll)."""
    file_ids = []
    for attachment in body.attachments():
        await _attach(request, vector_store_id, attachment.file_id, dict(attachment.attributes))
        file_ids.append(attachment.file_id)
    answer = await store(request).create_file_batch(
        store_pb2.CreateFileBatchRequest(knowledge_base_id=vector_store_id, file_ids=file_ids)
    )
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return VectorStoreFileBatch.from_proto(answer.batch)


@vector_stores_router.get(
    "/{vector_store_id}/file_batches/{batch_id}",
    response_model=VectorStoreFileBatch,
    responses=_ERRORS,
    summary="Retrieve a vector store file batch",
)
async def retrieve_file_batch(
    vector_store_id: str, batch_id: str, request: Request, response: Response
) -> VectorStoreFileBatch:
    answer = await store(request).get_file_batch(
        store_pb2.GetFileBatchRequest(knowledge_base_id=vector_store_id, file_batch_id=batch_id)
    )
    response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return VectorStoreFileBatch.from_proto(answer.batch)


@vector_stores_router.post(
    "/{vector_store_id}/file_batches/{batch_id}/cancel",
    response_model=VectorStoreFileBatch,
    responses=_ERRORS,
    summary="Cancel a vector store file batch",
)
async def cancel_file_batch(vector_store_id: str, batch_id: str, request: Request) -> VectorStoreFileBatch:
    """Its files not indexed yet are cancelled (their ingestion jobs stopped); one being indexed
    right now may still complete."""
    answer = await store(request).cancel_file_batch(
        store_pb2.CancelFileBatchRequest(knowledge_base_id=vector_store_id, file_batch_id=batch_id)
    )
    for job_id in answer.batch.pending_job_ids:
        try:
            await orchestrator(request).cancel_job(orchestrator_pb2.CancelJobRequest(job_id=job_id))
        except MeshError as error:  # already ended: nothing to stop
            if error.status != grpc.StatusCode.FAILED_PRECONDITION:
                raise
    return VectorStoreFileBatch.from_proto(answer.batch)


@vector_stores_router.get(
    "/{vector_store_id}/file_batches/{batch_id}/files",
    response_model=VectorStoreFileList,
    responses=_ERRORS,
    summary="List a vector store file batch's files",
)
async def list_file_batch_files(
    vector_store_id: str,
    batch_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str = "",
    order: Order = "desc",
    filter: Literal["in_progress", "completed", "failed", "cancelled"] | None = None,
) -> VectorStoreFileList:
    return await _file_list(request, vector_store_id, limit, after, order, filter, batch_id)


@vector_stores_router.post(
    "/{vector_store_id}/search",
    response_model=VectorStoreSearchPage,
    responses=_ERRORS,
    summary="Search a vector store",
)
async def search_vector_store(
    vector_store_id: str, body: VectorStoreSearchRequest, request: Request
) -> VectorStoreSearchPage:
    answer = await orchestrator(request).search_knowledge(
        orchestrator_pb2.SearchKnowledgeRequest(
            knowledge_base_ids=[vector_store_id],
            query=body.text(),
            mode=SEARCH_MODES[body.mode],
            top_k=body.max_num_results,
            filter_json=json.dumps(body.filters) if body.filters else "",
        )
    )
    threshold = body.ranking_options.score_threshold if body.ranking_options else 0.0
    results = [SearchResult.from_proto(hit) for hit in answer.hits if hit.score >= threshold]
    return VectorStoreSearchPage(search_query=[body.text()], data=results)


# The mesh's own API


@router.post("/bases", response_model=KnowledgeBaseView, status_code=201, responses=_ERRORS)
async def create_knowledge_base(body: KnowledgeBaseBody, request: Request) -> KnowledgeBaseView:
    """A knowledge base; 400 `not_an_embedding_model` when its model does not embed."""
    created = await orchestrator(request).create_knowledge_base(
        orchestrator_pb2.CreateKnowledgeBaseRequest(
            name=body.name,
            description=body.description,
            metadata=body.metadata,
            embedding_model=body.embedding_model,
            chunk_size=body.chunk_size,
            chunk_overlap=body.chunk_overlap,
        )
    )
    answer = await store(request).get_knowledge_base(
        store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=created.knowledge_base_id)
    )
    return KnowledgeBaseView.from_proto(answer.knowledge_base)


@router.get("/bases", response_model=KnowledgeBaseList, responses=_ERRORS)
async def list_knowledge_bases(
    request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str = ""
) -> KnowledgeBaseList:
    answer = await store(request).list_knowledge_bases(
        store_pb2.ListKnowledgeBasesRequest(limit=limit, after=after, ascending=True)
    )
    return KnowledgeBaseList(
        data=[KnowledgeBaseView.from_proto(b) for b in answer.knowledge_bases], has_more=answer.has_more
    )


@router.get("/bases/{base_id}", response_model=KnowledgeBaseView, responses=_ERRORS)
async def get_knowledge_base(base_id: str, request: Request) -> KnowledgeBaseView:
    answer = await store(request).get_knowledge_base(
        store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base_id)
    )
    return KnowledgeBaseView.from_proto(answer.knowledge_base)


@router.patch("/bases/{base_id}", response_model=UpdatedKnowledgeBase, responses=_ERRORS)
async def update_knowledge_base(
    base_id: str, body: KnowledgeBaseUpdate, request: Request
) -> UpdatedKnowledgeBase:
    """Renames it, or with a new embedding_model re-embeds every document (as jobs, listed)."""
    updated = await orchestrator(request).update_knowledge_base(
        orchestrator_pb2.UpdateKnowledgeBaseRequest(
            knowledge_base_id=base_id,
            name=body.name,
            description=body.description,
            set_metadata=body.metadata is not None,
            metadata=body.metadata or {},
            embedding_model=body.embedding_model,
        )
    )
    answer = await store(request).get_knowledge_base(
        store_pb2.GetKnowledgeBaseRequest(knowledge_base_id=base_id)
    )
    return UpdatedKnowledgeBase(
        knowledge_base=KnowledgeBaseView.from_proto(answer.knowledge_base), job_ids=list(updated.job_ids)
    )


@router.delete("/bases/{base_id}", status_code=204, responses=error_responses(401, 404, 409))
async def delete_knowledge_base(base_id: str, request: Request, force: bool = False) -> Response:
    """Deletes it with its documents; 409 `knowledge_base_in_use` while documents are being indexed,
    unless force=true."""
    await store(request).delete_knowledge_base(
        store_pb2.DeleteKnowledgeBaseRequest(knowledge_base_id=base_id, force=force)
    )
    return Response(status_code=204)


@router.post(
    "/bases/{base_id}/documents", response_model=DocumentAdded, status_code=202, responses=_ATTACH_ERRORS
)
async def add_document(base_id: str, body: DocumentBody, request: Request) -> DocumentAdded:
    """A document from `text` or an uploaded `file_id`, read now and indexed by a job (its status
    and progress: GET …/documents/{id}); the same text again is the same document (created false)."""
    if (body.text is None) == (body.file_id is None):
        raise InvalidArgument("a document has either text or file_id")
    source = {"text": body.text} if body.text is not None else {"file_id": body.file_id}
    added = await orchestrator(request).add_knowledge_document(
        orchestrator_pb2.AddKnowledgeDocumentRequest(
            knowledge_base_id=base_id,
            title=body.title,
            content_type=body.content_type,
            metadata_json=json.dumps(body.metadata),
            **source,
        )
    )
    return DocumentAdded(document_id=added.document_id, created=added.created, job_id=added.job_id)


@router.get("/bases/{base_id}/documents", response_model=DocumentList, responses=_ERRORS)
async def list_documents(
    base_id: str,
    request: Request,
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str = "",
) -> DocumentList:
    answer = await store(request).list_documents(
        store_pb2.ListDocumentsRequest(
            knowledge_base_id=base_id, status=status or "", limit=limit, after=after, ascending=True
        )
    )
    return DocumentList(data=[DocumentView.from_proto(d) for d in answer.documents], has_more=answer.has_more)


@router.get("/bases/{base_id}/documents/{document_id}", response_model=DocumentView, responses=_ERRORS)
async def get_document(base_id: str, document_id: str, request: Request) -> DocumentView:
    answer = await store(request).get_document(
        store_pb2.GetDocumentRequest(knowledge_base_id=base_id, document_id=document_id)
    )
    return DocumentView.from_proto(answer.document)


@router.delete("/bases/{base_id}/documents/{document_id}", status_code=204, responses=_ERRORS)
async def delete_document(base_id: str, document_id: str, request: Request) -> Response:
    await store(request).delete_document(
        store_pb2.DeleteDocumentRequest(knowledge_base_id=base_id, document_id=document_id)
    )
    return Response(status_code=204)


@router.post("/search", response_model=SearchAnswer, responses=_ERRORS)
async def search(body: SearchBody, request: Request) -> SearchAnswer:
    """Top chunks of the knowledge bases for the query, with their documents, offsets and scores."""
    answer = await orchestrator(request).search_knowledge(
        orchestrator_pb2.SearchKnowledgeRequest(
            knowledge_base_ids=body.knowledge_bases,
            query=body.query,
            mode=SEARCH_MODES[body.mode],
            top_k=body.top_k,
            filter_json=json.dumps(body.filter) if body.filter else "",
            exact=body.exact,
        )
    )
    return SearchAnswer(hits=[Hit.from_proto(h) for h in answer.hits], request_id=request_id_of(request))

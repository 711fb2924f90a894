"""The store's schema as SQLAlchemy ORM classes; Alembic migrations build exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY, REAL, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so migrations are identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = metadata


class Project(Base):
    """A tenant: every key belongs to one, and every object a caller creates belongs to its key's."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _project_column() -> Mapped[str]:
    return mapped_column(ForeignKey("projects.id"), index=True)


class PromptTemplate(Base):
    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = _project_column()
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list[TemplateVersion]] = relationship(
        back_populates="template", order_by="TemplateVersion.number"
    )


class TemplateVersion(Base):
    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("template_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("prompt_templates.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    # DRAFT, PUBLISHED or ARCHIVED
    status: Mapped[str] = mapped_column(String(16), default="DRAFT")
    system_prompt: Mapped[str | None] = mapped_column(Text)
    user_prompt_template: Mapped[str | None] = mapped_column(Text)
    llm_options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    template: Mapped[PromptTemplate] = relationship(back_populates="versions", lazy="joined")
    options: Mapped[list[VersionOption]] = relationship(order_by="VersionOption.position")

    @property
    def template_name(self) -> str:
        """The template's name, as a version read without the ORM (repository.VersionView) carries it."""
        return self.template.name


class VersionOption(Base):
    __tablename__ = "version_options"
    __table_args__ = (UniqueConstraint("version_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("template_versions.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (UniqueConstraint("project_id", "session_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = _project_column()
    session_code: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("template_versions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    version: Mapped[TemplateVersion] = relationship()
    answers: Mapped[list[SessionAnswer]] = relationship(
        order_by="SessionAnswer.position", cascade="all, delete-orphan"
    )
    result: Mapped[SessionResult | None] = relationship(cascade="all, delete-orphan")


class SessionAnswer(Base):
    __tablename__ = "session_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    option_id: Mapped[int] = mapped_column(ForeignKey("version_options.id"))
    value: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer)
    option: Mapped[VersionOption] = relationship(lazy="joined")


class SessionResult(Base):
    """The latest LLM result of a session (one per session) and the inputs that produced it."""

    __tablename__ = "session_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), unique=True)
    llm_result: Mapped[str] = mapped_column(Text)
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(200))
    usage: Mapped[dict[str, int]] = mapped_column(JSON)
    input_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The result parsed, when its version asked for a JSON schema (SQL NULL otherwise).
    json_result: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)


class PipelineRun(Base):
    """One run of a configured pipeline; its steps are jobs that point back at it."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (UniqueConstraint("project_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = _project_column()
    pipeline: Mapped[str] = mapped_column(String(100))
    # RUNNING, SUCCEEDED, FAILED or CANCELLED
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_job_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    """A batch of the Batch API: its lines are jobs that point back at it; its request counts are
    counted from them, and its output and error files are made of their results, in input order."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_open", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = _project_column()
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    # OpenAI's words: failed, in_progress, completed, expired, cancelling or cancelled
    status: Mapped[str] = mapped_column(String(16))
    batch_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    # Why it failed validation: [{code, message, line, param}]
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """A durable unit of background work, leased to one worker at a time."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claimable", "status", "run_at"),
        Index("ix_jobs_batch_line", "batch_id", "batch_line"),
        UniqueConstraint("project_id", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = _project_column()
    # generate, session, pipeline_step or webhook
    kind: Mapped[str] = mapped_column(String(32))
    # QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED
    status: Mapped[str] = mapped_column(String(16), default="QUEUED")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    # A QUEUED job is claimable from run_at on (later than created_at while it backs off).
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64), default="")
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[dict[str, str] | None] = mapped_column(JSON)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_job_id: Mapped[str | None] = mapped_column(String(32))
    pipeline_run_id: Mapped[str | None] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), index=True
    )
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    # A line of a batch (claimed after every other due job) and its index in the batch's input.
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    batch_line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """A key that authenticates gateway callers; only a hash of its secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = _project_column()
    name: Mapped[str] = mapped_column(String(100))
    # What the key may do (services/common/tenancy.SCOPES), e.g. ["generate", "sessions"].
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # SHA-256 of the secret part (hex): the secret is random, so a slow hash would buy nothing.
    secret_hash: Mapped[str] = mapped_column(String(64))
    # 0: the gateway's default limit.
    rpm_limit: Mapped[int] = mapped_column(Integer, default=0)
    tpm_limit: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Conversation(Base):
    """A chat whose turns the mesh keeps, so clients send only the new one."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("project_id", "conversation_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = _project_column()
    conversation_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    messages: Mapped[list[ConversationMessage]] = relationship(
        order_by="ConversationMessage.position", cascade="all, delete-orphan"
    )


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (UniqueConstraint("conversation_pk", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_pk: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    # user, assistant or tool (system instructions are sent with each request, not stored)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # An assistant turn's tool calls: [{"id", "name", "arguments"}]; None when it called none.
    tool_calls: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # A tool turn: the id of the call it answers.
    tool_call_id: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoredResponse(Base):
    """A response of the Responses API, kept so its id retrieves it and later responses continue it."""

    __tablename__ = "stored_responses"
    __table_args__ = (UniqueConstraint("project_id", "response_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = _project_column()
    response_id: Mapped[str] = mapped_column(String(64))
    # The response this one continued; not a foreign key: deleting that one leaves this one whole.
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    # in_progress, completed, incomplete, failed or cancelled
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(128))
    instructions: Mapped[str | None] = mapped_column(Text)
    # The client's key-value pairs ("metadata" is the declarative base's own attribute).
    labels: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    # max_output_tokens, temperature and top_p, where the request set them.
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    output_item_id: Mapped[str] = mapped_column(String(64))
    output_text: Mapped[str] = mapped_column(Text, default="")
    # stop, length or content_filter, once it ended with an output
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    usage: Mapped[dict[str, int] | None] = mapped_column(JSON)
    error: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The functions its output called ({id, name, arguments} each), when it ended calling tools.
    output_tool_calls: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    input: Mapped[list[StoredResponseItem]] = relationship(
        order_by="StoredResponseItem.position", cascade="all, delete-orphan"
    )


class StoredResponseItem(Base):
    """One input message of a stored response, as the client sent it."""

    __tablename__ = "stored_response_items"
    __table_args__ = (UniqueConstraint("response_pk", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_pk: Mapped[int] = mapped_column(ForeignKey("stored_responses.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(64))
    # user, assistant, system, developer or tool
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    # An assistant item's function calls ({id, name, arguments} each); a tool item's call id.
    tool_calls: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(Text)


class StoredFile(Base):
    """An uploaded file (OpenAI's /v1/files): its bytes kept in the database, per project. What it is
    for (`purpose`) is the uploader's word: assistants (knowledge bases), batch, user_data, …"""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = _project_column()
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column("bytes", Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class KnowledgeBase(Base):
    """A collection of documents searched together (OpenAI's vector store), embedded by one model.

    Changing the model starts a new generation: documents are embedded again into it while searches
    keep reading the serving generation, which moves once every document has the new one; a search
    never mixes two models' vectors."""

    __tablename__ = "knowledge_bases"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    project_id: Mapped[str] = _project_column()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    # The model new chunks are embedded with (generation), and the one searches use (serving_*).
    embedding_model: Mapped[str] = mapped_column(String(128))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    serving_generation: Mapped[int] = mapped_column(Integer, default=1)
    serving_model: Mapped[str] = mapped_column(String(128))
    # Characters per chunk and characters shared by neighbouring chunks.
    chunk_size: Mapped[int] = mapped_column(Integer)
    chunk_overlap: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KbFileBatch(Base):
    """Files attached to a knowledge base together (OpenAI's vector store file batch)."""

    __tablename__ = "kb_file_batches"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    knowledge_base_pk: Mapped[int] = mapped_column(
        ForeignKey("knowledge_bases.pk", ondelete="CASCADE"), index=True
    )
    file_ids: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class KbDocument(Base):
    """A document of a knowledge base: its extracted text, metadata and indexing state."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("knowledge_base_pk", "content_hash"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    knowledge_base_pk: Mapped[int] = mapped_column(
        ForeignKey("knowledge_bases.pk", ondelete="CASCADE"), index=True
    )
    # The uploaded file it came from, if any (not a foreign key: deleting the file keeps the document).
    file_id: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(100))
    # SHA-256 of the text: the same text added twice is one document.
    content_hash: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text, deferred=True)
    labels: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    # queued, in_progress, completed, failed, cancelled (OpenAI's vector store file statuses)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # The newest generation all its chunks are indexed in (0: none yet).
    indexed_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Progress of the generation being indexed: chunks it will have, and chunks written so far.
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    chunks_written: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, str] | None] = mapped_column(JSON)
    job_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    knowledge_base: Mapped[KnowledgeBase] = relationship(lazy="joined")

    @property
    def knowledge_base_id(self) -> str:
        return self.knowledge_base.id


class KbChunk(Base):
    """A piece of a document's text with its embedding, in one generation. Searches take it only once
    its document's indexed_generation has reached its generation: all its chunks are shown at once.

    The vector is float32 bytes on SQLite and real[] on PostgreSQL (cast to pgvector's vector(n) by
    its HNSW index and queries, so the schema needs no extension). Full text: the `terms` column,
    indexed by kb_chunks_fts on SQLite (FTS5, kept by triggers) and by a GIN index on PostgreSQL."""

    __tablename__ = "kb_chunks"
    __table_args__ = (
        UniqueConstraint("document_pk", "generation", "position"),
        Index("ix_kb_chunks_search", "knowledge_base_pk", "generation"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    knowledge_base_pk: Mapped[int] = mapped_column(ForeignKey("knowledge_bases.pk", ondelete="CASCADE"))
    document_pk: Mapped[int] = mapped_column(ForeignKey("kb_documents.pk", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    dimensions: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[Any] = mapped_column(LargeBinary().with_variant(ARRAY(REAL), "postgresql"))
    # The words and CJK bigrams of the text (services/store/knowledge.terms), space-separated on SQLite.
    terms: Mapped[Any] = mapped_column(Text().with_variant(TSVECTOR(), "postgresql"))


# Search indexes the ORM does not describe: SQLite's full-text index of kb_chunks.terms (an FTS5
# table and its shadow tables), PostgreSQL's GIN index of it (both made by migration 0007), and the
# HNSW index of each vector dimension (made by the store when a knowledge base first needs it).
FTS_TABLE = "kb_chunks_fts"
SEARCH_INDEXES = ("ix_kb_chunks_terms", "ix_kb_chunks_hnsw_")


def managed_by_orm(name: str | None, type_: str, parent_names: object) -> bool:
    """For schema comparisons (Alembic's include_name): every name but the search indexes above."""
    if name is None:
        return True
    if type_ == "table":
        return not name.startswith(FTS_TABLE)
    return not (type_ == "index" and name.startswith(SEARCH_INDEXES))

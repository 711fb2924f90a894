"""The store's schema as SQLAlchemy ORM classes; Alembic migrations build exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
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


class Job(Base):
    """A durable unit of background work, leased to one worker at a time."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_claimable", "status", "run_at"),
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
    # user, assistant, system or developer
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)

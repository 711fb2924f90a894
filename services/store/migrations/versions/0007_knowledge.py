"""Uploaded files, knowledge bases, their documents and chunks (vectors and full-text terms).

The vector column is float32 bytes on SQLite and real[] on PostgreSQL: no extension is needed to
migrate, so a PostgreSQL without pgvector still runs everything else; the store creates pgvector's
extension and its HNSW index (on the column cast to vector(n)) when a knowledge base is first used.
Full text: FTS5 on SQLite, a tsvector column with a GIN index on PostgreSQL, both over the terms the
store derives (words, and character bigrams of Japanese and Chinese text).

Revision ID: 0007_knowledge
Revises: 0006_responses
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_knowledge"
down_revision: str | None = "0006_responses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _project(table: str) -> tuple[sa.Column, sa.ForeignKeyConstraint]:
    return (
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f(f"fk_{table}_project_id_projects")
        ),
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), nullable=False),
        *_project("files"),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        _moment("created_at"),
        _moment("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(op.f("ix_files_project_id"), "files", ["project_id"])
    op.create_table(
        "knowledge_bases",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        *_project("knowledge_bases"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("embedding_model", sa.String(128), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("serving_generation", sa.Integer(), nullable=False),
        sa.Column("serving_model", sa.String(128), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap", sa.Integer(), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_knowledge_bases")),
        sa.UniqueConstraint("id", name=op.f("uq_knowledge_bases_id")),
    )
    op.create_index(op.f("ix_knowledge_bases_project_id"), "knowledge_bases", ["project_id"])
    op.create_table(
        "kb_documents",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("knowledge_base_pk", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.String(40), nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("indexed_generation", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("chunks_written", sa.Integer(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        _moment("created_at"),
        _moment("updated_at"),
        sa.ForeignKeyConstraint(
            ["knowledge_base_pk"],
            ["knowledge_bases.pk"],
            name=op.f("fk_kb_documents_knowledge_base_pk_knowledge_bases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_kb_documents")),
        sa.UniqueConstraint("id", name=op.f("uq_kb_documents_id")),
        sa.UniqueConstraint(
            "knowledge_base_pk", "content_hash", name=op.f("uq_kb_documents_knowledge_base_pk")
        ),
    )
    op.create_index(op.f("ix_kb_documents_knowledge_base_pk"), "kb_documents", ["knowledge_base_pk"])
    vector: sa.types.TypeEngine[Any] = postgresql.ARRAY(sa.REAL()) if postgres else sa.LargeBinary()
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("knowledge_base_pk", sa.Integer(), nullable=False),
        sa.Column("document_pk", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("dimensions", sa.Integer(), nullable=False),
        sa.Column("embedding", vector, nullable=False),
        sa.Column("terms", postgresql.TSVECTOR() if postgres else sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["knowledge_base_pk"],
            ["knowledge_bases.pk"],
            name=op.f("fk_kb_chunks_knowledge_base_pk_knowledge_bases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["document_pk"],
            ["kb_documents.pk"],
            name=op.f("fk_kb_chunks_document_pk_kb_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_chunks")),
        sa.UniqueConstraint("document_pk", "generation", "position", name=op.f("uq_kb_chunks_document_pk")),
    )
    op.create_index(op.f("ix_kb_chunks_document_pk"), "kb_chunks", ["document_pk"])
    op.create_index("ix_kb_chunks_search", "kb_chunks", ["knowledge_base_pk", "generation"])
    if postgres:
        op.execute("CREATE INDEX ix_kb_chunks_terms ON kb_chunks USING gin (terms)")
    else:
        # An external-content FTS5 index of kb_chunks.terms (its rowid is the chunk's id), kept in
        # step by triggers, as SQLite's FTS5 documentation does it.
        op.execute(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5(terms, content='kb_chunks', content_rowid='id')"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_fts_insert AFTER INSERT ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(rowid, terms) VALUES (new.id, new.terms); END"
        )
        op.execute(
            "CREATE TRIGGER kb_chunks_fts_delete AFTER DELETE ON kb_chunks BEGIN "
            "INSERT INTO kb_chunks_fts(kb_chunks_fts, rowid, terms) VALUES ('delete', old.id, old.terms); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER kb_chunks_fts_insert")
        op.execute("DROP TRIGGER kb_chunks_fts_delete")
        op.execute("DROP TABLE kb_chunks_fts")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("knowledge_bases")
    op.drop_index(op.f("ix_files_project_id"), table_name="files")
    op.drop_table("files")

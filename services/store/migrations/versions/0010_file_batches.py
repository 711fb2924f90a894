"""Vector store file batches: the files attached to a knowledge base together.

Revision ID: 0010_file_batches
Revises: 0009_response_tools
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_file_batches"
down_revision: str | None = "0009_response_tools"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kb_file_batches",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("knowledge_base_pk", sa.Integer(), nullable=False),
        sa.Column("file_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["knowledge_base_pk"],
            ["knowledge_bases.pk"],
            name=op.f("fk_kb_file_batches_knowledge_base_pk_knowledge_bases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_kb_file_batches")),
        sa.UniqueConstraint("id", name=op.f("uq_kb_file_batches_id")),
    )
    op.create_index(op.f("ix_kb_file_batches_knowledge_base_pk"), "kb_file_batches", ["knowledge_base_pk"])


def downgrade() -> None:
    op.drop_table("kb_file_batches")

"""Stored responses of the Responses API and their input items, per project.

Revision ID: 0006_responses
Revises: 0005_projects
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_responses"
down_revision: str | None = "0005_projects"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("output_item_id", sa.String(64), nullable=False),
        sa.Column("output_text", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(16), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        _moment("created_at"),
        _moment("completed_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_stored_responses_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_responses")),
        sa.UniqueConstraint("project_id", "response_id", name=op.f("uq_stored_responses_project_id")),
    )
    op.create_index(op.f("ix_stored_responses_project_id"), "stored_responses", ["project_id"])
    op.create_table(
        "stored_response_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("response_pk", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_pk"],
            ["stored_responses.id"],
            name=op.f("fk_stored_response_items_response_pk_stored_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_response_items")),
        sa.UniqueConstraint("response_pk", "position", name=op.f("uq_stored_response_items_response_pk")),
    )


def downgrade() -> None:
    op.drop_table("stored_response_items")
    op.drop_index(op.f("ix_stored_responses_project_id"), table_name="stored_responses")
    op.drop_table("stored_responses")

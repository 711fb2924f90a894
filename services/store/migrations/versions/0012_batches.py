"""Batches of the Batch API, and the jobs that are their lines.

Revision ID: 0012_batches
Revises: 0011_session_json_result
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_batches"
down_revision: str | None = "0011_session_json_result"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(64), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("output_file_id", sa.String(64), nullable=True),
        sa.Column("error_file_id", sa.String(64), nullable=True),
        _moment("created_at", nullable=False),
        _moment("expires_at", nullable=False),
        _moment("in_progress_at"),
        _moment("finalizing_at"),
        _moment("completed_at"),
        _moment("failed_at"),
        _moment("expired_at"),
        _moment("cancelling_at"),
        _moment("cancelled_at"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_batches_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(op.f("ix_batches_project_id"), "batches", ["project_id"])
    op.create_index("ix_batches_open", "batches", ["status", "expires_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("batch_line", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_jobs_batch_id_batches"), "batches", ["batch_id"], ["id"], ondelete="CASCADE"
        )
    op.create_index("ix_jobs_batch_line", "jobs", ["batch_id", "batch_line"])


def downgrade() -> None:
    op.drop_index("ix_jobs_batch_line", table_name="jobs")
    # The lines go with their batches; every other job stays.
    op.execute("DELETE FROM jobs WHERE batch_id IS NOT NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("fk_jobs_batch_id_batches"), type_="foreignkey")
        batch.drop_column("batch_line")
        batch.drop_column("batch_id")
    op.drop_index("ix_batches_open", table_name="batches")
    op.drop_index(op.f("ix_batches_project_id"), table_name="batches")
    op.drop_table("batches")

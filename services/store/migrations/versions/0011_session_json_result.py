"""A session's result keeps its parsed JSON when its version asked for a JSON schema.

Revision ID: 0011_session_json_result
Revises: 0010_file_batches
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_session_json_result"
down_revision: str | None = "0010_file_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("session_results", sa.Column("json_result", sa.JSON(), nullable=True))


def downgrade() -> None:
    # The text of each result stays; only its parsed copy goes.
    with op.batch_alter_table("session_results") as batch:
        batch.drop_column("json_result")

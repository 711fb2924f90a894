"""Stored responses keep function calls: those of their output, and the function_call and
function_call_output items of their input.

Revision ID: 0009_response_tools
Revises: 0008_conversation_tools
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_response_tools"
down_revision: str | None = "0008_conversation_tools"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stored_responses", sa.Column("output_tool_calls", sa.JSON(), nullable=True))
    op.add_column("stored_response_items", sa.Column("tool_calls", sa.JSON(), nullable=True))
    op.add_column("stored_response_items", sa.Column("tool_call_id", sa.Text(), nullable=True))


def downgrade() -> None:
    # Tool outputs mean nothing without their calls: they go, the rest of each response stays.
    op.execute("DELETE FROM stored_response_items WHERE role = 'tool'")
    with op.batch_alter_table("stored_response_items") as batch:
        batch.drop_column("tool_call_id")
        batch.drop_column("tool_calls")
    with op.batch_alter_table("stored_responses") as batch:
        batch.drop_column("output_tool_calls")

"""Stored conversations keep tool calls: an assistant turn's calls and a tool turn's call id.

Revision ID: 0008_conversation_tools
Revises: 0007_knowledge
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_conversation_tools"
down_revision: str | None = "0007_knowledge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversation_messages", sa.Column("tool_calls", sa.JSON(), nullable=True))
    op.add_column("conversation_messages", sa.Column("tool_call_id", sa.Text(), nullable=True))


def downgrade() -> None:
    # Tool turns mean nothing without their calls: they go, the rest of each conversation stays.
    op.execute("DELETE FROM conversation_messages WHERE role = 'tool'")
    with op.batch_alter_table("conversation_messages") as batch:
        batch.drop_column("tool_call_id")
        batch.drop_column("tool_calls")

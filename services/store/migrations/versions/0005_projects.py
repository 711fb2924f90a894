"""Projects (tenants): every key and every object a caller creates belongs to one.

Existing rows move into the default project, so a mesh upgraded with auth off sees no change; existing
keys keep every scope they could use before (all but admin). Names, session codes and idempotency keys
become unique per project, not across the mesh. Conversations were kept per key; they now belong to
the project, and those a key made are renamed `<key id>:<conversation id>` so they stay apart.

Revision ID: 0005_projects
Revises: 0004_access
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005_projects"
down_revision: str | None = "0004_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PROJECT = "default"
# What every key could do before keys had scopes (admin was the admin token's alone).
_FORMER_SCOPES = '["generate", "sessions", "templates", "jobs"]'


def _add_project(batch: Any, table: str) -> None:
    batch.add_column(sa.Column("project_id", sa.String(32), nullable=False, server_default=DEFAULT_PROJECT))
    batch.create_index(op.f(f"ix_{table}_project_id"), ["project_id"])
    batch.create_foreign_key(op.f(f"fk_{table}_project_id_projects"), "projects", ["project_id"], ["id"])


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.bulk_insert(
        projects,
        [{"id": DEFAULT_PROJECT, "name": "Default project", "created_at": datetime.now(UTC)}],
    )
    with op.batch_alter_table("prompt_templates") as batch:
        _add_project(batch, "prompt_templates")
        batch.drop_constraint("uq_prompt_templates_name", type_="unique")
        batch.create_unique_constraint(op.f("uq_prompt_templates_project_id"), ["project_id", "name"])
    with op.batch_alter_table("sessions") as batch:
        _add_project(batch, "sessions")
        batch.drop_constraint("uq_sessions_session_code", type_="unique")
        batch.create_unique_constraint(op.f("uq_sessions_project_id"), ["project_id", "session_code"])
    for table in ("pipeline_runs", "jobs"):
        with op.batch_alter_table(table) as batch:
            _add_project(batch, table)
            batch.drop_constraint(f"uq_{table}_idempotency_key", type_="unique")
            batch.create_unique_constraint(op.f(f"uq_{table}_project_id"), ["project_id", "idempotency_key"])
    with op.batch_alter_table("api_keys") as batch:
        _add_project(batch, "api_keys")
        batch.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default=_FORMER_SCOPES))
    # Conversations were each key's own (their ids chosen by clients, so two keys may share one); they
    # now belong to the project. Those a key made keep its key's id in front of theirs, so no key reads
    # another's and no two collide; those made with auth off (no key) keep their ids.
    op.execute(
        "UPDATE conversations SET conversation_id = substr(owner || ':' || conversation_id, 1, 128) "
        "WHERE owner <> ''"
    )
    with op.batch_alter_table("conversations") as batch:
        _add_project(batch, "conversations")
        batch.drop_constraint("uq_conversations_owner", type_="unique")
        batch.drop_column("owner")
        batch.create_unique_constraint(op.f("uq_conversations_project_id"), ["project_id", "conversation_id"])
    # The defaults only carried existing rows over: new rows always name their project and scopes.
    for table in ("prompt_templates", "sessions", "pipeline_runs", "jobs", "api_keys", "conversations"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("project_id", server_default=None)
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("scopes", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_constraint("uq_conversations_project_id", type_="unique")
        batch.add_column(sa.Column("owner", sa.String(32), nullable=False, server_default=""))
        batch.create_unique_constraint("uq_conversations_owner", ["owner", "conversation_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scopes")
    for table, unique in (
        ("prompt_templates", ["name"]),
        ("sessions", ["session_code"]),
        ("pipeline_runs", ["idempotency_key"]),
        ("jobs", ["idempotency_key"]),
    ):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_project_id", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_{unique[0]}", unique)
    for table in ("prompt_templates", "sessions", "pipeline_runs", "jobs", "api_keys", "conversations"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_project_id_projects", type_="foreignkey")
            batch.drop_index(f"ix_{table}_project_id")
            batch.drop_column("project_id")
    op.drop_table("projects")

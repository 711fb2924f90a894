"""Schemas of the admin API: projects and their API keys."""

from __future__ import annotations

from datetime import UTC, datetime

from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, ConfigDict, Field

from services.common.tenancy import DEFAULT_SCOPES, PROJECT_ID, SCOPES

_SCOPE_LIST = ", ".join(SCOPES)


class CreateProjectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(
        pattern=PROJECT_ID.pattern,
        description="1-32 lower-case letters, digits or '-': how keys and the logs name the project.",
    )
    name: str = Field(min_length=1, max_length=100, description="What the project is, for people.")


class ProjectView(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def from_proto(cls, project: store_pb2.Project) -> ProjectView:
        return cls(id=project.id, name=project.name, created_at=project.created_at.ToDatetime(tzinfo=UTC))


class ProjectList(BaseModel):
    projects: list[ProjectView]
    request_id: str


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, description="Who or what the key is for.")
    project: str | None = Field(
        default=None,
        description="The project the key acts for (it must exist); default: the default project, or the "
        "caller's own project when a project admin key creates it.",
    )
    scopes: list[str] | None = Field(
        default=None,
        min_length=1,
        description=f"What the key may do, any of: {_SCOPE_LIST}. Default: {', '.join(DEFAULT_SCOPES)}.",
    )
    rpm_limit: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Requests per minute; 0: the gateway's default."
    )
    tpm_limit: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Tokens per minute; 0: the gateway's default."
    )


class KeyView(BaseModel):
    id: str
    name: str
    project: str
    scopes: list[str]
    rpm_limit: int
    tpm_limit: int
    created_at: datetime
    revoked_at: datetime | None
    revoked: bool

    @classmethod
    def from_proto(cls, key: store_pb2.ApiKey) -> KeyView:
        revoked = key.HasField("revoked_at")
        return cls(
            id=key.id,
            name=key.name,
            project=key.project_id,
            scopes=list(key.scopes),
            rpm_limit=key.rpm_limit,
            tpm_limit=key.tpm_limit,
            created_at=key.created_at.ToDatetime(tzinfo=UTC),
            revoked_at=key.revoked_at.ToDatetime(tzinfo=UTC) if revoked else None,
            revoked=revoked,
        )


class CreatedKey(KeyView):
    key: str = Field(description="The API key to give the caller. It is shown only this once.")


class KeyList(BaseModel):
    keys: list[KeyView]
    request_id: str

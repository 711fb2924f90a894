"""Schemas of the admin API for API keys."""

from __future__ import annotations

from datetime import UTC, datetime

from llmmesh.store.v1 import store_pb2
from pydantic import BaseModel, ConfigDict, Field


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, description="Who or what the key is for.")
    rpm_limit: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Requests per minute; 0: the gateway's default."
    )
    tpm_limit: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Tokens per minute; 0: the gateway's default."
    )


class KeyView(BaseModel):
    id: str
    name: str
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

"""The admin API: create, list and revoke API keys (Bearer GATEWAY_ADMIN_TOKEN)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from llmmesh.store.v1 import store_pb2

from services.gateway.auth.admission import admission_of, require_admin
from services.gateway.auth.protocol import CreatedKey, CreateKeyRequest, KeyList, KeyView
from services.gateway.calls import store
from services.gateway.errors import error_responses, request_id_of

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(require_admin)])

_ERRORS = error_responses(
    descriptions={
        401: "The admin token is missing or wrong",
        403: "The admin API is disabled (no admin token set)",
    }
)


@router.post(
    "/api-keys", status_code=201, response_model=CreatedKey, responses=_ERRORS, summary="Create an API key"
)
async def create_key(body: CreateKeyRequest, request: Request) -> CreatedKey:
    """A new API key. The `key` in the answer is the only time it is shown: the store keeps its hash."""
    answer = await store(request).create_api_key(
        store_pb2.CreateApiKeyRequest(
            name=body.name,
            rpm_limit=body.rpm_limit,
            tpm_limit=body.tpm_limit,
        )
    )
    return CreatedKey(**KeyView.from_proto(answer.key).model_dump(), key=answer.secret)


@router.get("/api-keys", response_model=KeyList, responses=_ERRORS, summary="List API keys")
async def list_keys(request: Request) -> KeyList:
    """Every key, revoked ones included (secrets are never shown again)."""
    answer = await store(request).list_api_keys(store_pb2.ListApiKeysRequest())
    return KeyList(keys=[KeyView.from_proto(k) for k in answer.keys], request_id=request_id_of(request))


@router.delete(
    "/api-keys/{key_id}",
    response_model=KeyView,
    responses={**_ERRORS, **error_responses(404)},
    summary="Revoke an API key",
)
async def revoke_key(key_id: str, request: Request) -> KeyView:
    """Revoke a key: it stops working at once on this gateway, and within GATEWAY_API_KEY_CACHE_S on others."""
    answer = await store(request).revoke_api_key(store_pb2.RevokeApiKeyRequest(key_id=key_id))
    admission_of(request).forget(key_id)
    return KeyView.from_proto(answer.key)

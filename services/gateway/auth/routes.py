"""The admin API: projects and their API keys.

The operator (Bearer GATEWAY_ADMIN_TOKEN) manages every project; a key with the admin scope manages
its own project's keys (another project's key is not found to it, as everywhere).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from llmmesh.store.v1 import store_pb2

from services.gateway.auth.admission import Administrator, administrator, admission_of
from services.gateway.auth.protocol import (
    CreatedKey,
    CreateKeyRequest,
    CreateProjectRequest,
    KeyList,
    KeyView,
    ProjectList,
    ProjectView,
)
from services.gateway.calls import store
from services.gateway.errors import OperatorOnly, error_responses, request_id_of

router = APIRouter(prefix="/admin/v1", tags=["admin"])

Admin = Annotated[Administrator, Depends(administrator)]

_ERRORS = error_responses(
    descriptions={
        401: "The admin token (or API key) is missing or wrong",
        403: "The admin API is disabled (no admin token set), or the key lacks the admin scope",
    }
)


def _operator(admin: Administrator) -> None:
    if admin.project_id is not None:
        raise OperatorOnly("projects are managed with the admin token (GATEWAY_ADMIN_TOKEN), not an API key")


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectView,
    responses={**_ERRORS, **error_responses(409)},
    summary="Create a project",
)
async def create_project(body: CreateProjectRequest, request: Request, admin: Admin) -> ProjectView:
    """A new project (tenant): its keys see and change only its own templates, sessions, jobs and
    conversations."""
    _operator(admin)
    answer = await store(request).create_project(store_pb2.CreateProjectRequest(id=body.id, name=body.name))
    return ProjectView.from_proto(answer.project)


@router.get("/projects", response_model=ProjectList, responses=_ERRORS, summary="List projects")
async def list_projects(request: Request, admin: Admin) -> ProjectList:
    _operator(admin)
    answer = await store(request).list_projects(store_pb2.ListProjectsRequest())
    return ProjectList(
        projects=[ProjectView.from_proto(p) for p in answer.projects], request_id=request_id_of(request)
    )


@router.post(
    "/api-keys",
    status_code=201,
    response_model=CreatedKey,
    responses={**_ERRORS, **error_responses(400, 404)},
    summary="Create an API key",
)
async def create_key(body: CreateKeyRequest, request: Request, admin: Admin) -> CreatedKey:
    """A new API key of a project. The `key` in the answer is the only time it is shown: the store
    keeps its hash."""
    answer = await store(request).create_api_key(
        store_pb2.CreateApiKeyRequest(
            name=body.name,
            # None (the operator named none): the store's default project, decided there once.
            project_id=admin.project_for(body.project),
            scopes=body.scopes or [],
            rpm_limit=body.rpm_limit,
            tpm_limit=body.tpm_limit,
        )
    )
    return CreatedKey(**KeyView.from_proto(answer.key).model_dump(), key=answer.secret)


@router.get("/api-keys", response_model=KeyList, responses=_ERRORS, summary="List API keys")
async def list_keys(
    request: Request,
    admin: Admin,
    project: Annotated[
        str | None, Query(description="Only this project's keys (the operator's choice).")
    ] = None,
) -> KeyList:
    """Keys, revoked ones included (secrets are never shown again): a project admin sees its project's."""
    answer = await store(request).list_api_keys(
        store_pb2.ListApiKeysRequest(project_id=admin.project_for(project))
    )
    return KeyList(keys=[KeyView.from_proto(k) for k in answer.keys], request_id=request_id_of(request))


@router.delete(
    "/api-keys/{key_id}",
    response_model=KeyView,
    responses={**_ERRORS, **error_responses(404)},
    summary="Revoke an API key",
)
async def revoke_key(key_id: str, request: Request, admin: Admin) -> KeyView:
    """Revoke a key: it stops working at once on this gateway, and within GATEWAY_API_KEY_CACHE_S on others."""
    answer = await store(request).revoke_api_key(
        store_pb2.RevokeApiKeyRequest(key_id=key_id, project_id=admin.project_for(None))
    )
    admission_of(request).forget(key_id)
    return KeyView.from_proto(answer.key)

"""One page of a list, in OpenAI's list shape: how every list of the mesh's REST API answers (jobs,
pipeline runs, templates). The next page is asked for with `after=<last_id>`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel, Field

from services.gateway.errors import request_id_of

Item = TypeVar("Item", bound=BaseModel)

# The query parameters every list takes (the store bounds a page the same way).
LIMIT = Query(default=20, ge=1, le=100, description="Items on this page.")
AFTER = Query(default=None, max_length=100, description="The `last_id` of the previous page.")


class Page(BaseModel, Generic[Item]):
    object: Literal["list"] = "list"
    data: list[Item]
    first_id: str | None = Field(description="The first item's id (a template's name)")
    last_id: str | None = Field(description="The last item's id: pass it as `after` for the next page")
    has_more: bool
    request_id: str


def page_of(
    request: Request, data: Sequence[Item], id_of: Callable[[Item], str], has_more: bool
) -> Page[Item]:
    """The page of `data`, its first and last ids as `id_of` names them."""
    return Page[Item](
        data=list(data),
        first_id=id_of(data[0]) if data else None,
        last_id=id_of(data[-1]) if data else None,
        has_more=has_more,
        request_id=request_id_of(request),
    )

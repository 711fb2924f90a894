"""Stored responses of the Responses API, per project: created (with their ids), finished, read
alone or with the chain they continue, paged through their input items, and deleted."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased, selectinload

from services.common.errors import shown
from services.common.responses import MESSAGE_ROLES, new_item_id, new_response_id
from services.store.errors import (
    InvalidStoreRequest,
    ResponseItemNotFound,
    ResponseNotFound,
    ResponseNotInProgress,
)
from services.store.repository import page_size, unit_of_work
from services.store.tables import StoredResponse, StoredResponseItem, utcnow

IN_PROGRESS = "in_progress"
# What a response may be created as, and what an in-progress one may end as.
CREATED_AS = frozenset({IN_PROGRESS, "completed", "incomplete"})
ENDED_AS = frozenset({"completed", "incomplete", "failed", "cancelled"})
FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls"})
MAX_ID_CHARS = 64
MAX_METADATA_PAIRS = 16


# A function call as the store keeps it: {"id", "name", "arguments"}.
Call = dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """How a response ended: its output text (empty when it failed) and the functions it called,
    why, usage and any error."""

    status: str
    output_text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    error: dict[str, str] | None = None
    output_tool_calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class NewItem:
    """An input item: a message, an assistant's function calls, or a tool's output for a call."""

    role: str
    content: str
    tool_calls: tuple[Call, ...] = ()
    tool_call_id: str = ""


# The prefix of an input item's id, by what it holds (as OpenAI names them).
_CALLS_PREFIX, _OUTPUT_PREFIX = "fc_", "fco_"


def _item_id(item: NewItem) -> str:
    plain = new_item_id()
    if item.tool_calls:
        return _CALLS_PREFIX + plain.partition("_")[2]
    if item.role == "tool":
        return _OUTPUT_PREFIX + plain.partition("_")[2]
    return plain


@dataclass(frozen=True)
class NewResponse:
    model: str
    input: Sequence[NewItem]
    outcome: Outcome
    previous_response_id: str | None = None
    instructions: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _check_id(response_id: str) -> None:
    if not response_id or len(response_id) > MAX_ID_CHARS:
        raise InvalidStoreRequest(f"a response id is 1-{MAX_ID_CHARS} characters")


def _check_outcome(outcome: Outcome, allowed: frozenset[str]) -> None:
    if outcome.status not in allowed:
        raise InvalidStoreRequest(f"status must be one of {', '.join(sorted(allowed))}")
    if outcome.finish_reason is not None and outcome.finish_reason not in FINISH_REASONS:
        raise InvalidStoreRequest("finish_reason must be stop, length or content_filter")


def _check_new(new: NewResponse) -> None:
    _check_outcome(new.outcome, CREATED_AS)
    if not new.input:
        raise InvalidStoreRequest("a response needs at least one input message")
    for item in new.input:
        if item.role not in MESSAGE_ROLES:
            raise InvalidStoreRequest("an input item's role is user, assistant, system, developer or tool")
        if item.tool_calls and item.role != "assistant":
            raise InvalidStoreRequest("only an assistant item carries function calls")
        if (item.role == "tool") != bool(item.tool_call_id):
            raise InvalidStoreRequest("a tool item, and only a tool item, names the call it answers")
    if not new.model or len(new.model) > 128:
        raise InvalidStoreRequest("a response needs the model it was asked of (1-128 characters)")
    if new.previous_response_id is not None:
        _check_id(new.previous_response_id)
    if len(new.metadata) > MAX_METADATA_PAIRS:
        raise InvalidStoreRequest(f"metadata holds at most {MAX_METADATA_PAIRS} pairs")


class StoredResponses:
    """The store's responses, each in its project: another project's is NOT_FOUND."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    @staticmethod
    async def _find(
        db: AsyncSession, project: str, response_id: str, with_input: bool = False
    ) -> StoredResponse:
        _check_id(response_id)
        query = select(StoredResponse).where(
            StoredResponse.project_id == project, StoredResponse.response_id == response_id
        )
        if with_input:
            query = query.options(selectinload(StoredResponse.input))
        response = await db.scalar(query)
        if response is None:
            raise ResponseNotFound(f"no response has id {shown(response_id)}")
        return response

    async def create(self, project: str, new: NewResponse) -> StoredResponse:
        """Store a response with its input; the store gives it and each input message its id."""
        _check_new(new)
        outcome = new.outcome
        response = StoredResponse(
            project_id=project,
            response_id=new_response_id(),
            previous_response_id=new.previous_response_id,
            status=outcome.status,
            model=new.model,
            instructions=new.instructions,
            labels=dict(new.metadata),
            params=dict(new.params),
            output_item_id=new_item_id(),
            output_text=outcome.output_text,
            finish_reason=outcome.finish_reason,
            usage=outcome.usage,
            error=outcome.error,
            created_at=utcnow(),
            completed_at=None if outcome.status == IN_PROGRESS else utcnow(),
            output_tool_calls=list(outcome.output_tool_calls) or None,
            input=[
                StoredResponseItem(
                    position=index,
                    item_id=_item_id(item),
                    role=item.role,
                    content=item.content,
                    tool_calls=list(item.tool_calls) or None,
                    tool_call_id=item.tool_call_id or None,
                )
                for index, item in enumerate(new.input)
            ],
        )
        async with self._transaction() as db:
            db.add(response)
        return response

    async def finish(self, project: str, response_id: str, outcome: Outcome) -> StoredResponse:
        """Record how an in-progress response ended; one that has ended already is left as it is."""
        _check_outcome(outcome, ENDED_AS)
        async with self._transaction() as db:
            response = await self._find(db, project, response_id)
            if response.status != IN_PROGRESS:
                raise ResponseNotInProgress(f"response {shown(response_id)} has already ended")
            response.status = outcome.status
            response.output_text = outcome.output_text
            response.finish_reason = outcome.finish_reason
            response.usage = outcome.usage
            response.error = outcome.error
            response.output_tool_calls = list(outcome.output_tool_calls) or None
            response.completed_at = utcnow()
        return response

    async def get(self, project: str, response_id: str) -> StoredResponse:
        async with self._transaction() as db:
            return await self._find(db, project, response_id)

    async def chain(self, project: str, response_id: str) -> list[StoredResponse]:
        """The response and those it continued, oldest first, each with its input. The walk follows
        previous_response_id in one recursive query and stops where a response is no longer stored."""
        async with self._transaction() as db:
            await self._find(db, project, response_id)
            start = (
                select(StoredResponse.id, StoredResponse.previous_response_id, literal(0).label("depth"))
                .where(StoredResponse.project_id == project, StoredResponse.response_id == response_id)
                .cte("chain", recursive=True)
            )
            earlier = aliased(StoredResponse)
            walk = start.union_all(
                select(earlier.id, earlier.previous_response_id, start.c.depth + 1).where(
                    earlier.project_id == project, earlier.response_id == start.c.previous_response_id
                )
            )
            rows = await db.scalars(
                select(StoredResponse)
                .join(walk, StoredResponse.id == walk.c.id)
                .order_by(walk.c.depth.desc())
                .options(selectinload(StoredResponse.input))
            )
            return list(rows)

    async def delete(self, project: str, response_id: str) -> None:
        _check_id(response_id)
        async with self._transaction() as db:
            deleted = await db.execute(
                delete(StoredResponse).where(
                    StoredResponse.project_id == project, StoredResponse.response_id == response_id
                )
            )
        if not deleted.rowcount:  # type: ignore[attr-defined]
            raise ResponseNotFound(f"no response has id {shown(response_id)}")

    async def input_items(
        self, project: str, response_id: str, limit: int, ascending: bool, after: str
    ) -> tuple[list[StoredResponseItem], bool]:
        """One page of the response's input items, in the order asked for, after the item `after`
        when given; and whether more follow."""
        limit = page_size(limit)
        async with self._transaction() as db:
            response = await self._find(db, project, response_id)
            query = select(StoredResponseItem).where(StoredResponseItem.response_pk == response.id)
            if after:
                position = await db.scalar(
                    select(StoredResponseItem.position).where(
                        StoredResponseItem.response_pk == response.id, StoredResponseItem.item_id == after
                    )
                )
                if position is None:
                    raise ResponseItemNotFound(
                        f"response {shown(response_id)} has no input item {shown(after)}"
                    )
                query = query.where(
                    StoredResponseItem.position > position
                    if ascending
                    else StoredResponseItem.position < position
                )
            order = StoredResponseItem.position.asc() if ascending else StoredResponseItem.position.desc()
            items = list(await db.scalars(query.order_by(order).limit(limit + 1)))
        return items[:limit], len(items) > limit

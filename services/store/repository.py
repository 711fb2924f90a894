"""Every query the store runs. Other services reach the database only through the store's gRPC API."""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import joinedload, selectinload

from services.common.errors import shown
from services.store.db import sqlite_writer_turn
from services.store.errors import (
    InvalidStatusTransition,
    InvalidStoreRequest,
    NoPublishedVersion,
    SessionExists,
    SessionNotFound,
    StoreUnavailable,
    TemplateExists,
    TemplateNotFound,
    UnknownOption,
    VersionNotDraft,
    VersionNotFound,
)
from services.store.migrate import current_revision
from services.store.reads import Reads
from services.store.tables import (
    PromptTemplate,
    Session,
    SessionAnswer,
    SessionResult,
    TemplateVersion,
    VersionOption,
    utcnow,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SESSION_CODE = re.compile(r"^[A-Za-z0-9_-]{4,64}$")
# Allowed moves between version statuses; a published version's content is final.
_TRANSITIONS = {("DRAFT", "PUBLISHED"), ("DRAFT", "ARCHIVED"), ("PUBLISHED", "ARCHIVED")}
# Every list the store pages (templates, jobs, runs, a response's input items): the page size when
# the caller names none, and the largest one it may ask for.
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _check_options(options: Sequence[tuple[str, str]]) -> None:
    keys = [key for key, _ in options]
    if len(set(keys)) != len(keys):
        raise InvalidStoreRequest("option keys must be unique within a version")
    if any(not key or len(key) > 100 for key in keys):
        raise InvalidStoreRequest("option keys must be 1-100 characters")


async def keyset_page(
    db: AsyncSession,
    query: Select[Any],
    keys: Sequence[Any],
    after: Sequence[Any] | None,
    limit: int,
    ascending: bool = False,
) -> tuple[list[Any], bool]:
    """One page of the query's rows ordered by `keys` (oldest first when ascending, else newest
    first), past the row whose keys are `after` when given; and whether more rows follow. Every
    list of the store pages this way (one more row than the page is read to know)."""
    if after is not None:
        cursor = tuple_(*keys)
        query = query.where(cursor > tuple_(*after) if ascending else cursor < tuple_(*after))
    order = [key if ascending else key.desc() for key in keys]
    rows = list(await db.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def page_size(limit: int) -> int:
    """The page size a list call asked for (0: the default); outside 1-MAX_PAGE it is refused."""
    limit = limit or DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidStoreRequest(f"limit must be between 1 and {MAX_PAGE}")
    return limit


@dataclass(frozen=True)
class StoreDescription:
    dialect: str
    server_version: str
    schema_revision: str


@dataclass(frozen=True)
class NewAnswer:
    option_key: str
    value: str


@dataclass(frozen=True)
class NewResult:
    llm_result: str
    messages: list[dict[str, str]]
    model: str
    usage: dict[str, int]
    input_hash: str
    # The result parsed, when its version asked for a JSON schema.
    json_result: Any = None


# A session as a read returns it: plain values, shaped where the servicer reads them as the ORM
# objects that writes return are (session_to_proto takes either).


@dataclass(frozen=True)
class OptionView:
    key: str
    label: str


@dataclass(frozen=True)
class AnswerView:
    option: OptionView
    value: str


@dataclass(frozen=True)
class VersionView:
    id: int
    template_name: str
    number: int
    status: str
    system_prompt: str | None
    user_prompt_template: str | None
    llm_options: dict[str, Any] | None
    options: list[OptionView]
    created_at: datetime
    published_at: datetime | None


@dataclass(frozen=True)
class ResultView:
    llm_result: str
    messages: list[dict[str, str]]
    model: str
    usage: dict[str, int]
    input_hash: str
    created_at: datetime
    json_result: Any = None


@dataclass(frozen=True)
class SessionView:
    session_code: str
    created_at: datetime
    version: VersionView
    answers: list[AnswerView]
    result: ResultView | None


# Everything a session run reads, in one statement: the session, its version with the template's
# name and its result (one of each), joined to the version's options, one row per option, each with
# the session's answer to it when there is one (an option is answered at most once: put_answers).
# Every cached run reads this, so it is one round trip (on SQLite, one hop to a reader thread: see
# services/store/reads.py) where loading the ORM objects took three, and plain rows where the ORM's
# objects, identity map and commit cost more than the query itself. Built once.
_SESSION_READ = (
    select(
        Session.session_code,
        Session.created_at,
        TemplateVersion.id.label("version_id"),
        TemplateVersion.number,
        TemplateVersion.status,
        TemplateVersion.system_prompt,
        TemplateVersion.user_prompt_template,
        TemplateVersion.llm_options,
        TemplateVersion.created_at.label("version_created_at"),
        TemplateVersion.published_at,
        PromptTemplate.name.label("template_name"),
        SessionResult.id.label("result_id"),
        SessionResult.llm_result,
        SessionResult.messages,
        SessionResult.model,
        SessionResult.usage,
        SessionResult.input_hash,
        SessionResult.created_at.label("result_created_at"),
        SessionResult.json_result,
        VersionOption.key.label("option_key"),
        VersionOption.label.label("option_label"),
        SessionAnswer.value.label("answer_value"),
        SessionAnswer.position.label("answer_position"),
    )
    .join(TemplateVersion, TemplateVersion.id == Session.version_id)
    .join(PromptTemplate, PromptTemplate.id == TemplateVersion.template_id)
    .outerjoin(SessionResult, SessionResult.session_id == Session.id)
    .outerjoin(VersionOption, VersionOption.version_id == TemplateVersion.id)
    .outerjoin(
        SessionAnswer,
        (SessionAnswer.session_id == Session.id) & (SessionAnswer.option_id == VersionOption.id),
    )
    .where(Session.project_id == bindparam("project"), Session.session_code == bindparam("session_code"))
    .order_by(VersionOption.position)
)


def _session_view(rows: Sequence[Any]) -> SessionView:
    """The session of _SESSION_READ's rows (at least one)."""
    first = rows[0]
    options = [OptionView(row.option_key, row.option_label) for row in rows if row.option_key is not None]
    answered = sorted(
        (row for row in rows if row.answer_position is not None), key=lambda row: row.answer_position
    )
    return SessionView(
        session_code=first.session_code,
        created_at=first.created_at,
        version=VersionView(
            id=first.version_id,
            template_name=first.template_name,
            number=first.number,
            status=first.status,
            system_prompt=first.system_prompt,
            user_prompt_template=first.user_prompt_template,
            llm_options=first.llm_options,
            options=options,
            created_at=first.version_created_at,
            published_at=first.published_at,
        ),
        answers=[
            AnswerView(OptionView(row.option_key, row.option_label), row.answer_value) for row in answered
        ],
        result=None
        if first.result_id is None
        else ResultView(
            llm_result=first.llm_result,
            messages=first.messages,
            model=first.model,
            usage=first.usage,
            input_hash=first.input_hash,
            created_at=first.result_created_at,
            json_result=first.json_result,
        ),
    )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidStoreRequest(
            "template name must be 1-100 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


log = logging.getLogger("llmmesh.store")

# SQLSTATE class 22, "data exception": the database refused a value (a NUL character in text, a
# number out of range), not the connection.
_DATA_EXCEPTION_CLASS = "22"


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")


@contextmanager
def unavailable_on_connection_errors() -> Iterator[None]:
    """Database errors other than constraint violations and refused values mean the database cannot
    serve: UNAVAILABLE. A refused value is the caller's data error (INVALID_ARGUMENT), logged with the
    database's own words (never the values)."""
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as exc:
        state = _sqlstate(exc)
        if state.startswith(_DATA_EXCEPTION_CLASS):
            log.warning("database refused a value", extra={"sqlstate": state, "reason": str(exc.orig)})
            raise InvalidStoreRequest(
                "a field holds a value the database cannot store (text with a NUL character, say)"
            ) from exc
        log.error("database error", extra={"sqlstate": state, "reason": str(exc.orig)})
        raise StoreUnavailable("the database is unreachable") from exc
    except OSError as exc:
        raise StoreUnavailable("the database is unreachable") from exc


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A transaction, committed on success; integrity errors reach the caller to name them, other
    database errors become StoreUnavailable.

    On SQLite it waits its turn among this store's writers, then begins IMMEDIATE: the driver would
    otherwise begin only at the first write, so what the transaction read before it came from no
    transaction at all, and another process's commit in between went unseen."""
    engine = sessions.kw["bind"]
    if engine.dialect.name != "sqlite":
        with unavailable_on_connection_errors():
            async with sessions.begin() as session:
                yield session
        return
    async with sqlite_writer_turn(engine):
        with unavailable_on_connection_errors():
            async with sessions.begin() as session:
                await session.execute(text("BEGIN IMMEDIATE"))
                yield session


class Repository:
    """Database access for the store service."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._reads = Reads(engine)

    async def close(self) -> None:
        """Release the read path's threads and connections (the engine is its owner's to dispose)."""
        await self._reads.close()

    def _transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self._sessions)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        with unavailable_on_connection_errors():
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def describe(self) -> StoreDescription:
        def _describe(connection: Connection) -> StoreDescription:
            dialect = connection.dialect
            if dialect.name == "sqlite":
                version = sqlite3.sqlite_version
            else:
                version = ".".join(str(part) for part in dialect.server_version_info or ())
            return StoreDescription(dialect.name, version, current_revision(connection))

        with unavailable_on_connection_errors():
            async with self.engine.connect() as connection:
                return await connection.run_sync(_describe)

    # Templates and versions

    async def create_template(self, project: str, name: str, description: str) -> PromptTemplate:
        _check_name(name)
        try:
            async with self._transaction() as db:
                template = PromptTemplate(project_id=project, name=name, description=description, versions=[])
                db.add(template)
        except IntegrityError as exc:
            raise TemplateExists(f"a template named {name!r} already exists") from exc
        return template

    async def get_template(self, project: str, name: str) -> PromptTemplate:
        async with self._transaction() as db:
            return await self._template(db, project, name, with_versions=True)

    async def list_templates(self, project: str, limit: int, after: str) -> tuple[list[PromptTemplate], bool]:
        """One page of `project`'s templates by name, after the name `after` when given, each with
        its versions; and whether more follow."""
        limit = page_size(limit)
        query = (
            select(PromptTemplate)
            .where(PromptTemplate.project_id == project, PromptTemplate.name > after)
            .options(selectinload(PromptTemplate.versions).selectinload(TemplateVersion.options))
            .order_by(PromptTemplate.name)
            .limit(limit + 1)
        )
        async with self._transaction() as db:
            templates = list((await db.execute(query)).scalars())
        return templates[:limit], len(templates) > limit

    async def _template(
        self, db: AsyncSession, project: str, name: str, with_versions: bool = False
    ) -> PromptTemplate:
        query = select(PromptTemplate).where(
            PromptTemplate.project_id == project, PromptTemplate.name == name
        )
        if with_versions:
            query = query.options(selectinload(PromptTemplate.versions).selectinload(TemplateVersion.options))
        template = (await db.execute(query)).scalar_one_or_none()
        if template is None:
            raise TemplateNotFound(f"no template named {shown(name)}")
        return template

    async def add_version(
        self,
        project: str,
        template_name: str,
        system_prompt: str | None,
        user_prompt_template: str | None,
        llm_options: dict[str, Any] | None,
        options: Sequence[tuple[str, str]],
    ) -> TemplateVersion:
        _check_options(options)
        try:
            async with self._transaction() as db:
                template = await self._template(db, project, template_name)
                newest = await db.scalar(
                    select(func.max(TemplateVersion.number)).where(TemplateVersion.template_id == template.id)
                )
                version = TemplateVersion(
                    template=template,
                    number=(newest or 0) + 1,
                    status="DRAFT",
                    system_prompt=system_prompt,
                    user_prompt_template=user_prompt_template,
                    llm_options=llm_options,
                    options=[
                        VersionOption(key=key, label=label, position=index)
                        for index, (key, label) in enumerate(options)
                    ],
                )
                db.add(version)
        except IntegrityError as exc:  # another version was added at the same moment
            raise StoreUnavailable("the version could not be numbered; retry") from exc
        return version

    async def update_draft(
        self,
        project: str,
        template_name: str,
        number: int,
        system_prompt: str | None,
        user_prompt_template: str | None,
        llm_options: dict[str, Any] | None,
        options: Sequence[tuple[str, str]],
    ) -> TemplateVersion:
        """Replace a DRAFT version's content. Only a draft: no session runs on one, so nothing stored
        was made from what changes; a PUBLISHED version's content is final."""
        _check_options(options)
        async with self._transaction() as db:
            version = await self._version(db, project, template_name, number)
            if version.status != "DRAFT":
                raise VersionNotDraft(
                    f"version {number} of {template_name!r} is {version.status}; only a DRAFT version can be "
                    "edited (add a new version instead)"
                )
            version.system_prompt = system_prompt
            version.user_prompt_template = user_prompt_template
            version.llm_options = llm_options
            for option in version.options:
                await db.delete(option)
            await db.flush()  # the old choices go before the new ones take their (version, key)
            version.options = [
                VersionOption(key=key, label=label, position=index)
                for index, (key, label) in enumerate(options)
            ]
        return version

    async def set_version_status(
        self, project: str, template_name: str, number: int, status: str
    ) -> TemplateVersion:
        async with self._transaction() as db:
            version = await self._version(db, project, template_name, number)
            if version.status == status:
                return version
            if (version.status, status) not in _TRANSITIONS:
                raise InvalidStatusTransition(
                    f"version {number} of {template_name!r} is {version.status}; it cannot become {status}"
                )
            version.status = status
            if status == "PUBLISHED":
                version.published_at = utcnow()
        return version

    async def get_version(self, project: str, template_name: str, number: int) -> TemplateVersion:
        async with self._transaction() as db:
            return await self._version(db, project, template_name, number)

    async def _version(
        self, db: AsyncSession, project: str, template_name: str, number: int
    ) -> TemplateVersion:
        template = await self._template(db, project, template_name)
        query = (
            select(TemplateVersion)
            .where(TemplateVersion.template_id == template.id, TemplateVersion.number == number)
            .options(selectinload(TemplateVersion.options))
        )
        version = (await db.execute(query)).scalar_one_or_none()
        if version is None:
            raise VersionNotFound(f"template {shown(template_name)} has no version {number}")
        return version

    # Sessions

    async def create_session(
        self, project: str, session_code: str, template_name: str, version_number: int
    ) -> Session:
        if session_code and not _SESSION_CODE.match(session_code):
            raise InvalidStoreRequest("session_code must be 4-64 characters of letters, digits, '_' or '-'")
        code = session_code or secrets.token_urlsafe(12)
        try:
            async with self._transaction() as db:
                if version_number:
                    version = await self._version(db, project, template_name, version_number)
                else:
                    version = await self._newest_published(db, project, template_name)
                session = Session(
                    project_id=project, session_code=code, version=version, answers=[], result=None
                )
                db.add(session)
        except IntegrityError as exc:
            raise SessionExists(f"a session with code {code!r} already exists") from exc
        return session

    async def _newest_published(self, db: AsyncSession, project: str, template_name: str) -> TemplateVersion:
        template = await self._template(db, project, template_name)
        number = await db.scalar(
            select(func.max(TemplateVersion.number)).where(
                TemplateVersion.template_id == template.id, TemplateVersion.status == "PUBLISHED"
            )
        )
        if number is None:
            raise NoPublishedVersion(f"template {template_name!r} has no published version")
        return await self._version(db, project, template_name, number)

    async def put_answers(self, project: str, session_code: str, answers: Sequence[NewAnswer]) -> Session:
        async with self._transaction() as db:
            session = await self._session(db, project, session_code)
            options = {option.key: option for option in session.version.options}
            unknown = [a.option_key for a in answers if a.option_key not in options]
            if unknown:
                raise UnknownOption(
                    f"version {session.version.number} of {session.version.template.name!r} has no option "
                    f"{unknown[0]!r}; it offers: {', '.join(options) or 'none'}"
                )
            if len({a.option_key for a in answers}) != len(answers):
                raise InvalidStoreRequest("each option may be answered once")
            session.answers = [
                SessionAnswer(option=options[a.option_key], value=a.value, position=index)
                for index, a in enumerate(answers)
            ]
        return session

    async def get_session(self, project: str, session_code: str) -> SessionView:
        """The session with its version, answers and latest result (see _SESSION_READ), read in one
        statement on the store's hot read path (services/store/reads.py): no transaction around it."""
        with unavailable_on_connection_errors():
            rows = await self._reads.rows(_SESSION_READ, {"project": project, "session_code": session_code})
        if not rows:
            raise SessionNotFound(f"no session with code {shown(session_code)}")
        return _session_view(rows)

    async def _session(self, db: AsyncSession, project: str, session_code: str) -> Session:
        query = (
            select(Session)
            .where(Session.project_id == project, Session.session_code == session_code)
            .options(
                # one row per session for the one-to-one parts, one query per list: three in all
                joinedload(Session.version).selectinload(TemplateVersion.options),
                joinedload(Session.result),
                selectinload(Session.answers),
            )
        )
        session = (await db.execute(query)).scalar_one_or_none()
        if session is None:
            raise SessionNotFound(f"no session with code {shown(session_code)}")
        return session

    async def save_result(self, project: str, session_code: str, new: NewResult) -> SessionResult:
        """Store the session's result, replacing the previous one in the same transaction."""
        try:
            return await self._save_result(project, session_code, new)
        except IntegrityError:  # a concurrent run stored the session's first result; replace it
            return await self._save_result(project, session_code, new)

    async def _save_result(self, project: str, session_code: str, new: NewResult) -> SessionResult:
        async with self._transaction() as db:
            session = await self._session(db, project, session_code)
            if session.result is None:
                session.result = SessionResult(session_id=session.id)
            result = session.result
            result.llm_result = new.llm_result
            result.messages = new.messages
            result.model = new.model
            result.usage = new.usage
            result.input_hash = new.input_hash
            result.json_result = new.json_result
            result.created_at = utcnow()
        return result

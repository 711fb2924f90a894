"""Shared fixtures: a free port, the databases to test on, the packaged model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.mesh import POSTGRES_URL_ENV, free_port, fresh_postgres_database


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    server_url = os.environ.get(POSTGRES_URL_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_URL_ENV} to run these tests on it")
    async with fresh_postgres_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def model_path() -> Iterator[Path]:
    """The packaged Gemma 3 270M GGUF (assembled once per user cache)."""
    from services.inference.backends.llama_cpp import packaged_model_path

    yield packaged_model_path()


@pytest.fixture(scope="session")
def pgvector_server_url() -> Iterator[str]:
    """A PostgreSQL 16 with pgvector of its own (the pgserver wheel), on a Unix socket, for the
    session: the system's PostgreSQL may lack pgvector (Debian bookworm has no package of it).

    Its data lives outside pytest's temporary folders: run as root, pgserver runs PostgreSQL as a
    user of its own, which cannot enter those (mode 0700)."""
    pgserver = pytest.importorskip(
        "pgserver", reason="pgserver (the dev extra) runs PostgreSQL with pgvector"
    )
    data = Path(tempfile.mkdtemp(prefix="llmmesh-pgvector-"))
    data.chmod(0o755)
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        socket_dir = server.get_uri().partition("host=")[2]
        yield f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "pgvector"])
async def knowledge_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database whose engine has vector search: SQLite, or PostgreSQL with pgvector."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_postgres_database(request.getfixturevalue("pgvector_server_url")) as url:
        yield url

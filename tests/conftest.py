"""Shared fixtures: a free port, the databases to test on, the packaged model."""

from __future__ import annotations

import os
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

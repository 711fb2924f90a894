"""Connections that cannot hold the gateway hostage: header size limit, header deadline, body read
timeout. Raw sockets on loopback, so the test controls exactly what arrives and when."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.mesh import scripted_mesh

LIMITS = {"max_header_bytes": 4096, "header_timeout_s": 0.3, "body_timeout_s": 0.3}


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", gateway_settings=LIMITS) as mesh:
        url = urlsplit(str(mesh.client.base_url))
        yield url.hostname or "", url.port or 0


async def exchange(address: tuple[str, int], *parts: bytes, pause_s: float = 0.0) -> tuple[int, dict, float]:
    """Send parts (pausing between them), then read until the server closes: status, JSON body and
    how long the server took to answer after the last part."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)
        started = asyncio.get_running_loop().time()
        raw = await asyncio.wait_for(reader.read(), 5)
        took = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, json.loads(body) if body.startswith(b"{") else {}, took


async def test_headers_over_the_limit_are_431(address: tuple[str, int]) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: mesh\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    status, body, _ = await exchange(address, big[:8192], big[8192:])
    assert status == 431
    assert body["error"]["code"] == "request_headers_too_large" and len(body["error"]["request_id"]) == 32


async def test_headers_that_never_finish_are_408_within_the_deadline(address: tuple[str, int]) -> None:
    status, body, took = await exchange(address, b"GET /healthz HTTP/1.1\r\nHost: mesh\r\n")
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert took < 3


async def test_a_connection_that_sends_nothing_is_closed(address: tuple[str, int]) -> None:
    status, _, took = await exchange(address)
    assert status == 408 and took < 3


async def test_a_body_that_stalls_is_408(address: tuple[str, int]) -> None:
    head = (
        b"POST /api/v1/ai/generate HTTP/1.1\r\nHost: mesh\r\ncontent-type: application/json\r\n"
        b"content-length: 100\r\n\r\n"
    )
    status, body, took = await exchange(address, head, b'{"prompt": ')
    assert status == 408, body
    assert body["error"]["code"] == "request_timeout" and body["error"]["request_id"]
    assert took < 3


async def test_ordinary_requests_on_one_connection_are_untouched(address: tuple[str, int]) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: mesh\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n"
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(0.5)  # longer than the header deadline, between requests (keep-alive)
    writer.write(last)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.count(b"HTTP/1.1 200 OK") == 2, raw

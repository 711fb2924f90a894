"""The webhook address guard: which addresses the mesh may post to, and how a URL's host is judged.

The address check is pure. The resolution tests use only names that resolve without a network
(numeric forms read by libc, `localhost` from /etc/hosts), and no test sends a packet anywhere:
through the whole mesh the guard is exercised with loopback receivers only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.store.v1 import store_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.orchestrator.errors import InvalidJob, WebhookTargetRefused
from services.orchestrator.webhooks import WebhookGuard, refused_because
from services.store.client import StoreClient
from tests.support.http import assert_error
from tests.support.mesh import scripted_mesh, scripted_registry, serve_asgi

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 it carries
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("10.0.0.7", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("::ffff:10.1.2.3", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
        ("192.0.2.10", "private"),  # documentation
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str, reason: str) -> None:
    assert refused_because(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "151.101.1.69", "2606:4700:4700::1111"])
def test_public_addresses_may_be_posted_to(address: str) -> None:
    assert refused_because(ipaddress.ip_address(address)) is None


def test_an_allowed_network_lifts_the_refusal_for_its_addresses_only() -> None:
    allowed = [ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("127.0.0.0/8")]
    assert refused_because(ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert refused_because(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refused_because(ipaddress.ip_address("10.21.0.1"), allowed) == "private"
    assert refused_because(ipaddress.ip_address("::1"), allowed) == "loopback"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:9/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one decimal number
        "http://0x7f000001/hook",  # ... in hex
        "http://127.1/hook",  # ... with its zeros left out
        "http://0177.0.0.1/hook",  # ... in octal
        "http://0/hook",  # 0.0.0.0, which reaches this host on Linux
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://user:pass@127.0.0.1:8443/hook",
    ],
)
async def test_every_encoding_of_this_host_is_refused(url: str) -> None:
    with pytest.raises(WebhookTargetRefused) as refused:
        await WebhookGuard().check(url)
    assert refused.value.code == "webhook_url_refused"
    assert "ORCHESTRATOR_WEBHOOK_ALLOWED_NETWORKS" in refused.value.message


async def test_an_allow_listed_loopback_target_is_pinned_to_its_checked_address() -> None:
    target = await WebhookGuard(LOOPBACK).check("http://2130706433:8080/hook")
    assert (str(target.address), target.parts.port, target.parts.path) == ("127.0.0.1", 8080, "/hook")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///x", "hook", "http://a/" + "x" * 2048])
async def test_a_url_that_is_not_absolute_http_is_a_bad_request(url: str) -> None:
    with pytest.raises(InvalidJob):
        await WebhookGuard(LOOPBACK).check(url)


async def test_a_loopback_webhook_is_refused_at_submission(tmp_path: Path) -> None:
    registry = scripted_registry(pipelines={"echo": {"steps": [{"name": "only", "prompt": "{{ input.q }}"}]}})
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", registry=registry) as mesh:
        for path, body in (
            ("/api/v1/ai/generate", {"prompt": "hi", "async": True}),
            ("/api/v1/pipelines/echo/runs", {"input": {"q": "hi"}}),
        ):
            response = await mesh.client.post(path, json={**body, "webhook_url": "http://127.0.0.1:9/hook"})
            error = assert_error(response, 400, "webhook_url_refused")
            assert "loopback" in error["message"], path
        assert mesh.backend.calls == [], "nothing was queued, so nothing ran"


async def test_a_target_is_checked_again_when_the_webhook_is_delivered(tmp_path: Path) -> None:
    """A job that reached the queue with a loopback webhook (bypassing the submission check, as a
    name that later resolves inward would) still gets no POST: its delivery fails, not retried."""
    posts: list[bytes] = []

    async def hook(request: Request) -> JSONResponse:
        posts.append(await request.body())
        return JSONResponse({})

    # No poll within the test: the webhook job runs because the store announced it.
    fast = {"job_poll_s": 60, "job_heartbeat_s": 0.2, "job_retry_backoff_s": 0.01}
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with scripted_mesh(f"sqlite+aiosqlite:///{tmp_path}/s.db", generation_timeout_s=5, **fast) as mesh:
        assert mesh.settings is not None
        async for base in serve_asgi(app):
            store = StoreClient.connect(mesh.settings.store_addr)
            spec = {"spec": {"prompt": "hi", "model": "scripted"}}
            queued = await store.enqueue_job(
                store_pb2.EnqueueJobRequest(
                    job=store_pb2.NewJob(
                        kind=common_pb2.JOB_KIND_GENERATE,
                        request_json=json.dumps(spec),
                        webhook_url=f"{base}/hook",
                    )
                )
            )
            await store.close()
            url = f"/api/v1/ai/status/{queued.job.id}"
            for _ in range(100):
                status = (await mesh.client.get(url)).json()
                if (status.get("webhook") or {}).get("status") in ("SUCCEEDED", "FAILED"):
                    break
                await asyncio.sleep(0.05)
    assert status["status"] == "SUCCEEDED", "the job's own outcome stands"
    assert status["webhook"] == {
        "url": f"{base}/hook",
        "status": "FAILED",
        "attempts": 1,  # refused is permanent: not retried
        "error": status["webhook"]["error"],
    }
    assert "loopback" in status["webhook"]["error"]
    assert posts == []

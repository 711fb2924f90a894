"""Webhook deliveries, behind an address guard: the mesh posts only to public addresses.

A webhook URL is the caller's, so without a guard the orchestrator would post wherever it is told:
to the cloud's metadata service, to loopback, to the cluster's private services, and the job status
would report what it found there. So a target's host is resolved and every address it resolves to
must be public (not loopback, private, link-local, shared, multicast, reserved or unspecified, in
any of their encodings: libc's resolver reads `2130706433` and `127.1` as 127.0.0.1, and IPv4-mapped
IPv6 is checked as the IPv4 it carries), unless an allow-listed network
(ORCHESTRATOR_WEBHOOK_ALLOWED_NETWORKS) holds it. The check runs when the job is submitted and again
at each delivery, which then connects to the very address it checked (a name that later resolves
inward is caught, and cannot be swapped in between); redirects are never followed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import httpx

from services.orchestrator.errors import InvalidJob, WebhookFailed, WebhookTargetRefused

SIGNATURE_HEADER = "X-LLM-Mesh-Signature"
MAX_URL_CHARS = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def refused_because(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """Why the mesh must not post to address ("loopback", "private", ...), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return None
    for reason, test in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if test:
            return reason
    if not address.is_global:  # shared (100.64/10), documentation, benchmarking, 6to4 relays, ...
        return "not public"
    return None


def parse_webhook_url(url: str) -> SplitResult:
    """The URL's parts, when it is an absolute http(s) URL of reasonable length."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_CHARS:
        raise InvalidJob(
            f"webhook_url must be an absolute http:// or https:// URL of at most {MAX_URL_CHARS} characters"
        )
    return parts


@dataclass(frozen=True)
class Target:
    """A webhook URL and the public address it was checked to resolve to."""

    parts: SplitResult
    address: Address


class WebhookGuard:
    """Resolves webhook targets and refuses any that is not public (see the module docstring)."""

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self.allowed = tuple(allowed)

    async def check(self, url: str) -> Target:
        """The target to post to; WebhookTargetRefused when the host does not resolve or any of its
        addresses may not be posted to."""
        parts = parse_webhook_url(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise WebhookTargetRefused(f"the webhook host {host!r} does not resolve") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        for address in addresses:
            reason = refused_because(address, self.allowed)
            if reason is not None:
                raise WebhookTargetRefused(
                    f"the webhook host {host!r} is a {reason} address; the mesh posts webhooks only to "
                    "public ones (ORCHESTRATOR_WEBHOOK_ALLOWED_NETWORKS lists exceptions)"
                )
        return Target(parts, addresses[0])


class WebhookSender:
    """Posts signed webhook bodies to checked targets."""

    def __init__(
        self, guard: WebhookGuard, http: httpx.AsyncClient, timeout_s: float, secret: bytes | None
    ) -> None:
        self._guard = guard
        self._http = http
        self._timeout_s = timeout_s
        self._secret = secret

    async def post(self, url: str, body: bytes, delivery_id: str) -> int:
        """POST body to url (checked again now) and return the receiver's 2xx status; WebhookFailed
        when it is unreachable or answers otherwise (retried), WebhookTargetRefused when it may not
        be posted to (not retried)."""
        target = await self._guard.check(url)
        parts = target.parts
        headers = {
            "Content-Type": "application/json",
            "X-LLM-Mesh-Delivery": delivery_id,
            "Host": parts.netloc.rpartition("@")[2],
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        # Connect to the address that was checked, not to whatever the name resolves to next.
        ip = f"[{target.address}]" if target.address.version == 6 else str(target.address)
        pinned = parts._replace(netloc=f"{ip}:{parts.port}" if parts.port else ip).geturl()
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            response = await self._http.post(
                pinned, content=body, headers=headers, timeout=self._timeout_s, extensions=extensions
            )
        except httpx.HTTPError as exc:
            raise WebhookFailed(
                f"webhook receiver {parts.hostname} unreachable ({type(exc).__name__})"
            ) from exc
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"webhook receiver {parts.hostname} answered HTTP {response.status_code}")
        return response.status_code

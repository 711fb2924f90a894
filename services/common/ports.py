"""The ports a service listens on: binding as the servers do, and a taken port as a ConfigError that
names the address and the setting to change."""

from __future__ import annotations

import random
import socket

from services.common.config import ConfigError


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, not yet listening (connections are refused until the server
    calls listen). SO_REUSEADDR as gRPC, uvicorn and the metrics server set it: a port left in TIME_WAIT
    by a stopped service is free, one that another process listens on is not."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_failure(host: str, port: int) -> str | None:
    """Why host:port cannot be listened on (e.g. "Address already in use"), or None when it can."""
    try:
        bound_socket(host, port).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def port_unavailable(what: str, host: str, port: int, setting: str, reason: str | None = None) -> ConfigError:
    """The error a service starts with when it cannot listen: where, why, and which setting moves it."""
    why = reason or bind_failure(host, port) or "bind failed"
    return ConfigError(f"cannot listen for {what} on {host}:{port} ({why}); set {setting} to a free port")


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections (Linux: ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low, high = (int(part) for part in ranges.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


# Every port unused_port has handed out in this process: several are often picked before any of
# their services listens (a mesh's eight ports), and a port that is free now is free for each pick.
_handed_out: set[int] = set()


def unused_port(host: str = "127.0.0.1") -> int:
    """A port free to listen on now and not handed out before by this process, chosen below the
    kernel's ephemeral range: a port picked by binding to 0 comes from that range, where an outgoing
    connection made meanwhile (a gRPC channel between the services being started) can take it before
    its service listens."""
    low, _ = _ephemeral_range()
    ceiling = min(low, 65536) - 1
    for _ in range(200):
        port = random.randint(max(1024, ceiling - 12_000), ceiling)
        if port not in _handed_out and bind_failure(host, port) is None:
            _handed_out.add(port)
            return port
    raise ConfigError(f"no free port found on {host} below {low}")

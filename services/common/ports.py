"""The ports a service listens on: binding as the servers do, and a taken port as a ConfigError that
names the address and the setting to change."""

from __future__ import annotations

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

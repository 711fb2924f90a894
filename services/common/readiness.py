"""Telling the supervisor that started a service when it is ready, as systemd's sd_notify and s6's
notification fd do: `llm-mesh up` hands each child the write end of a pipe (its number in
LLM_MESH_READY_FD) and the service writes one line once it serves. Only that child holds the pipe, so
a stranger answering on the same port can never be taken for it."""

from __future__ import annotations

import logging
import os

READY_FD_ENV = "LLM_MESH_READY_FD"
READY_LINE = b"ready\n"

log = logging.getLogger("llmmesh.readiness")

_ready_fd: int | None = None


def claim_ready_fd() -> None:
    """Take the pipe out of the environment at process start, so processes this service spawns
    (model engines) neither inherit it nor could ever report readiness in its place."""
    global _ready_fd
    value = os.environ.pop(READY_FD_ENV, None)
    if value is None:
        return
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        log.warning("ignoring %s=%r: not an open file descriptor", READY_FD_ENV, value)
        return
    _ready_fd = fd


def notify_ready() -> None:
    """Report readiness once, when started under a supervisor; a no-op otherwise."""
    global _ready_fd
    fd, _ready_fd = _ready_fd, None
    if fd is None:
        return
    try:
        os.write(fd, READY_LINE)
    except OSError as exc:  # the supervisor is gone; PR_SET_PDEATHSIG stops this process soon
        log.warning("cannot report readiness: %s", exc.strerror)
    finally:
        os.close(fd)

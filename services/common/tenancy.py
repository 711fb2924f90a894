"""The project a call acts for: set by the gateway from the caller's API key, carried in gRPC metadata
across hops (as the request id is), and applied by the store to every query of a project's objects.

A call without a project acts in the default project: the laptop default (auth off), and the mesh's
own housekeeping. A client of the gateway cannot choose its project: the gateway takes it from the key
the store verified and copies no HTTP header into metadata. Whoever can reach a mesh service's port
could name any project, which is why deployments with keys set MESH_SERVICE_TOKEN (the manifests do):
then only mesh services are answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from services.common.errors import InvalidProject, shown

METADATA_KEY = "x-mesh-project"
DEFAULT_PROJECT = "default"
# A project id: short, lower-case, safe in logs, URLs and metadata.
PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

_current: ContextVar[str] = ContextVar("project", default=DEFAULT_PROJECT)


def current_project() -> str:
    return _current.get()


def accept_project(candidate: str | None) -> str:
    """The project named in a call's metadata (none named: the default project). One that is not a
    project id is refused, not read as the default: a call meant for one project must never act in
    another."""
    if not candidate:
        return DEFAULT_PROJECT
    if not PROJECT_ID.fullmatch(candidate):
        raise InvalidProject(f"{METADATA_KEY} {shown(candidate, 40)} is not a project id")
    return candidate


def set_project(project: str) -> None:
    """Make `project` the current one for the rest of this task (a gateway request: its own task)."""
    _current.set(project)


@contextmanager
def bound_project(project: str) -> Iterator[str]:
    """Make `project` the current one for the enclosed code (a job run for its project)."""
    token = _current.set(project)
    try:
        yield project
    finally:
        _current.reset(token)


# What an API key may do. A key has some of these; routes name the one they need.
SCOPES = ("generate", "sessions", "templates", "jobs", "admin")
# A new key's scopes unless its creator says otherwise: everything but managing its project's keys.
DEFAULT_SCOPES = ("generate", "sessions", "templates", "jobs")
# How every API key begins ("lmk_<id>_<secret>"), so a key is told from other bearer tokens.
API_KEY_PREFIX = "lmk_"

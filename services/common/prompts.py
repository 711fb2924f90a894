"""Prompt templates that operators write (template versions, pipeline steps), rendered safely."""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

# The sandbox keeps operator-written templates from reaching Python internals; StrictUndefined
# makes a misspelt variable an error instead of an empty string in the prompt.
_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@functools.lru_cache(maxsize=256)
def compiled(source: str) -> Template:
    """Compile each template once: every run renders it, cached session runs included."""
    return _JINJA.from_string(source)

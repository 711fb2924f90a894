"""What makes a JSON Schema one the mesh accepts, checked once for every place that takes one (a
request's output format, a template version's llm_options)."""

from __future__ import annotations

from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

# A schema is a program the engine compiles; bound what one may hand it.
MAX_SCHEMA_CHARS = 64_000


def schema_problem(schema: Any) -> str | None:
    """What is wrong with `schema` as a JSON Schema (None: nothing), in words a user knows."""
    if not isinstance(schema, dict):
        return "the JSON schema must be a JSON object"
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        return f"the JSON schema is invalid at {where}: {exc.message}"
    return None

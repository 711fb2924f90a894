"""OpenAI's published schemas (vendored under tests/gateway/openai_schema), for asserting that an
answer of the mesh is what OpenAI's API reference says it is."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).parents[1] / "gateway" / "openai_schema" / "openai.json"


def _nullable(node: Any) -> Any:
    """OpenAI's document is OpenAPI 3.1 but keeps some of 3.0's `nullable: true` (as on a stream chunk's
    `logprobs`), which JSON Schema ignores: read as OpenAPI means, null allowed beside the type."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@cache
def _registry() -> Registry:
    document = _nullable(json.loads(SCHEMAS.read_text()))
    return Registry().with_resource("urn:openai", Resource.from_contents(document, DRAFT202012))


def conforms(name: str, instance: Any) -> None:
    """Assert that instance is valid against OpenAI's schema `name` (JSON Schema 2020-12, as OpenAPI 3.1)."""
    schema = {"$ref": f"urn:openai#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(instance)

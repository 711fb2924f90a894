"""Rewrites openai.json from OpenAI's openapi.json: the component schemas NAMES and the closure of
their $refs, copied unchanged. Usage: python refresh.py path/to/openapi.json (see README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES = [
    # chat completions, completions, embeddings, models (tests/gateway/test_openai.py)
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    # the Responses API (tests/gateway/test_responses.py)
    "Response",
    "ResponseItemList",
    "ResponseCreatedEvent",
    "ResponseInProgressEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseContentPartDoneEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseCompletedEvent",
    "ResponseIncompleteEvent",
    "ResponseFailedEvent",
    "ResponseErrorEvent",
    # function calls in the Responses API (tests/gateway/test_responses_tools.py)
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    # the file_search tool's call (tests/gateway/test_knowledge.py)
    "ResponseFileSearchCallInProgressEvent",
    "ResponseFileSearchCallSearchingEvent",
    "ResponseFileSearchCallCompletedEvent",
    # vector store file batches (tests/gateway/test_knowledge.py)
    "VectorStoreFileBatchObject",
]
PREFIX = "#/components/schemas/"


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(PREFIX) :]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def main(source: str) -> None:
    document = json.loads(Path(source).read_text())
    schemas = document["components"]["schemas"]
    kept: dict[str, Any] = {}
    todo = list(NAMES)
    while todo:
        name = todo.pop()
        if name not in kept:
            kept[name] = schemas[name]
            todo.extend(refs(schemas[name]))
    out = {
        "openapi": document["openapi"],
        "info": {"title": document["info"]["title"], "version": document["info"]["version"]},
        "components": {"schemas": dict(sorted(kept.items()))},
    }
    (Path(__file__).parent / "openai.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])

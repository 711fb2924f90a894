"""One local HTTP server speaking four providers' wire protocols, for the cloud backends' tests.

The backends under test use the real SDKs (openai, anthropic, google-genai, boto3) with their base URL
pointed here, so request building, response parsing, SSE and AWS event-stream decoding and the SDKs'
own error types are all real. Only the provider is replaced.

Each request takes the next behaviour from `script` ("ok" when it is empty):
  ok       the reply "<provider> says: <last user message>", streamed in word pieces when asked
  empty    a reply with no text
  throttle 429 (Bedrock: ThrottlingException), in the provider's own error format
  auth     401/403: the key is refused
  context  400: the prompt is too long for the model
  down     503
  slow     waits 3 s before answering (longer than the tests' provider timeout)
  parallel (OpenAI, Anthropic; with tools) "Let me check." and two tool calls in one turn
  aftertext (Anthropic; with tools) the tool call, then the text "I asked for it." after it
  badjson  (OpenAI; with a JSON response_format) "not json"

A request that offers tools (and does not rule them out) is answered, on "ok", as a model would: a call
of the named tool (or the first) with `{"input": <last user message>}`; a request whose last turn is a
tool's result gets the reply "<provider> says: tool said <result>".
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Recorded:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def reply_for(provider: str, text: str) -> str:
    return f"{provider} says: {text}"


def pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + [words[-1]] if text else []


def vector(text: str) -> list[float]:
    """A deterministic stand-in embedding: different texts, different vectors."""
    return [float(len(text)), float(sum(map(ord, text)) % 97), 1.0]


def event_stream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of the AWS event-stream encoding (application/vnd.amazon.eventstream)."""
    encoded = b"".join(
        bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in headers.items()
    )
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def instance(schema: dict[str, Any]) -> Any:
    """A small value valid against a JSON schema (objects, arrays, enums, strings, numbers, booleans)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        return {name: instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema.get("items", {}))]
    return {"string": "x", "integer": 1, "number": 1.5, "boolean": True}.get(kind)


def conforming_to(schema: dict[str, Any]) -> Any:
    """A value valid against a JSON schema, as a model that honours it answers."""
    definitions = schema.get("$defs", {})

    def resolved(node: Any) -> Any:  # pydantic's schemas refer to $defs
        if isinstance(node, dict):
            if "$ref" in node:
                return resolved(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {k: resolved(v) for k, v in node.items()}
        return [resolved(v) for v in node] if isinstance(node, list) else node

    return instance(resolved(schema))


def conforming(response_format: dict[str, Any]) -> Any:
    """What a model that honours OpenAI's response_format answers."""
    if response_format["type"] == "json_object":
        return {"answer": "yes"}
    return conforming_to(response_format["json_schema"]["schema"])


# The tool a mesh backend declares for a JSON answer on APIs that take no schema for it (Anthropic,
# Bedrock): a model forced to call a tool after its other tools have answered calls this one.
ANSWER_TOOL = "structured_output"


def arguments_for(tool: str, schema: dict[str, Any], asked: str, behaviour: str) -> str:
    """A tool call's arguments: for the answer tool a value that fits its schema (on "badjson", an
    empty object, missing what the schema requires); for any other, the asked text as its "input"."""
    if tool != ANSWER_TOOL:
        return tool_arguments(asked)
    return "{}" if behaviour == "badjson" else json.dumps(conforming_to(schema))


def tool_arguments(text: str) -> str:
    return json.dumps({"input": text})


def halves(text: str) -> list[str]:
    """A tool call's arguments in two streamed pieces, as providers send them in several."""
    return [text[: len(text) // 2], text[len(text) // 2 :]]


def sse(data: Any, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


@dataclass
class FakeProviders:
    script: deque[str] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)

    def then(self, *behaviours: str) -> None:
        self.script.extend(behaviours)

    def calls(self, provider: str) -> list[Recorded]:
        return [r for r in self.requests if r.provider == provider]

    async def _take(self, provider: str, request: Request) -> tuple[str, dict[str, Any]]:
        body = await request.json() if await request.body() else {}
        self.requests.append(Recorded(provider, request.url.path, dict(request.headers), body))
        behaviour = self.script.popleft() if self.script else "ok"
        if behaviour == "slow":
            await asyncio.sleep(3)
        return behaviour, body

    # --- OpenAI: /v1/chat/completions, /v1/embeddings -------------------------------------------

    @staticmethod
    def _openai_error(behaviour: str) -> Response | None:
        errors = {
            "throttle": (429, "Rate limit reached for requests", "rate_limit_exceeded"),
            "auth": (401, "Incorrect API key provided", "invalid_api_key"),
            "context": (400, "This model's maximum context length is 8192 tokens", "context_length_exceeded"),
            "down": (503, "The server is overloaded", None),
        }
        if behaviour not in errors:
            return None
        status, message, code = errors[behaviour]
        return JSONResponse(
            {"error": {"message": message, "type": "error", "code": code}}, status_code=status
        )

    async def openai_chat(self, request: Request) -> Response:
        behaviour, body = await self._take("openai", request)
        if (error := self._openai_error(behaviour)) is not None:
            return error
        last = body["messages"][-1]
        tools, choice = body.get("tools") or [], body.get("tool_choice", "auto")
        calls: list[dict[str, Any]] = []
        if last["role"] == "tool":
            text = reply_for("openai", f"tool said {last['content']}")
        elif tools and choice != "none":
            named = choice["function"]["name"] if isinstance(choice, dict) else None
            text = {"parallel": "Let me check.", "aftertext": "I asked for it."}.get(behaviour, "")
            calls = [
                {"id": f"call_{i + 1}", "type": "function", "function": {"name": name, "arguments": arguments}}
                for i, (name, arguments) in enumerate(self._calls(behaviour, named, {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}, last["content"]))
            ]  # fmt: skip
        elif body.get("response_format", {}).get("type") in ("json_object", "json_schema"):
            text = "not json" if behaviour == "badjson" else json.dumps(conforming(body["response_format"]))
        else:
            text = "" if behaviour == "empty" else reply_for("openai", last["content"])
        usage = {
            "prompt_tokens": 5,
            "completion_tokens": len(pieces(text)),
            "total_tokens": 5 + len(pieces(text)),
        }
        base = {"id": "chatcmpl-1", "created": 1, "model": body["model"]}
        asked_top = body.get("top_logprobs") or 0

        def scores(piece: str) -> dict[str, Any] | None:
            """OpenAI's logprobs of a piece (one token per piece here), when the request asked."""
            if not body.get("logprobs"):
                return None
            tops = [{"token": f"{piece}~{i}", "logprob": -1.0 - i, "bytes": None} for i in range(asked_top)]
            token = {"token": piece, "logprob": -0.25, "bytes": list(piece.encode()), "top_logprobs": tops}
            return {"content": [token], "refusal": None}

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message = {**message, "content": text or None, "tool_calls": calls}
            answer = {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
            if body.get("logprobs"):
                answer["logprobs"] = {"content": [t for p in pieces(text) for t in scores(p)["content"]], "refusal": None}  # type: ignore[index]  # fmt: skip
            return JSONResponse({**base, "object": "chat.completion", "choices": [answer], "usage": usage})

        def chunk(delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        async def events() -> AsyncIterator[str]:
            yield sse(chunk({"role": "assistant", "content": "" if text or not calls else None}, None))
            for piece in pieces(text):
                yield sse(chunk({"content": piece}, None, scores(piece)))
            for index, call in enumerate(calls):
                opening = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                yield sse(chunk({"tool_calls": [{"index": index, **opening}]}, None))
                for piece in halves(call["function"]["arguments"]):
                    yield sse(
                        chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None)
                    )
            yield sse(chunk({}, "tool_calls" if calls else "stop"))
            if body.get("stream_options", {}).get("include_usage"):
                yield sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @staticmethod
    def _calls(
        behaviour: str, named: str | None, tools: dict[str, dict[str, Any]], asked: str
    ) -> list[tuple[str, str]]:
        """The calls a model makes, as (tool, JSON arguments), given the tools' schemas by name: of
        the named tool or the first; on "parallel", two (the first two tools, or the one twice)."""
        names = list(tools)
        first = named or names[0]
        if behaviour != "parallel":
            return [(first, arguments_for(first, tools[first], asked, behaviour))]
        second = names[1] if len(names) > 1 else first
        return [
            (first, arguments_for(first, tools[first], asked, behaviour)),
            (second, arguments_for(second, tools[second], f"{asked} too", behaviour)),
        ]

    async def openai_embeddings(self, request: Request) -> Response:
        behaviour, body = await self._take("openai", request)
        if (error := self._openai_error(behaviour)) is not None:
            return error
        data = [
            {"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        )

    # --- Anthropic: /v1/messages ---------------------------------------------------------------

    async def anthropic_messages(self, request: Request) -> Response:
        behaviour, body = await self._take("anthropic", request)
        errors = {
            "throttle": (429, "rate_limit_error", "Number of requests has exceeded your rate limit"),
            "auth": (401, "authentication_error", "invalid x-api-key"),
            "context": (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
            "down": (529, "overloaded_error", "Overloaded"),
        }
        if behaviour in errors:
            status, kind, message = errors[behaviour]
            return JSONResponse(
                {"type": "error", "error": {"type": kind, "message": message}},
                status_code=status,
                headers={"x-should-retry": "false"},
            )
        last = body["messages"][-1]["content"]
        results = [b for b in last if b.get("type") == "tool_result"] if isinstance(last, list) else []
        tools, choice = body.get("tools") or [], body.get("tool_choice", {"type": "auto"})
        uses: list[dict[str, Any]] = []
        named = choice["name"] if choice["type"] == "tool" else None
        schemas = {t["name"]: t["input_schema"] for t in tools}
        if results and choice["type"] == "any" and ANSWER_TOOL in schemas:
            named = ANSWER_TOOL
        if results and not named:
            text = reply_for("anthropic", f"tool said {results[0]['content']}")
        elif tools and choice["type"] != "none":
            text = {"parallel": "Let me check.", "aftertext": "I asked for it."}.get(behaviour, "")
            uses = [
                {"type": "tool_use", "id": f"toolu_{i + 1}", "name": name, "input": json.loads(arguments)}
                for i, (name, arguments) in enumerate(self._calls(behaviour, named, schemas, last if isinstance(last, str) else ""))
            ]  # fmt: skip
        else:
            text = "" if behaviour == "empty" else reply_for("anthropic", last)
        output_tokens = len(pieces(text))
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "stop_sequence": None,
        }
        said = [{"type": "text", "text": text}] if text else []
        blocks = uses + said if behaviour == "aftertext" else said + uses
        if not body.get("stream"):
            return JSONResponse(
                {
                    **message,
                    "content": blocks,
                    "stop_reason": "tool_use" if uses else "end_turn",
                    "usage": {"input_tokens": 7, "output_tokens": output_tokens},
                }
            )

        async def events() -> AsyncIterator[str]:
            start = {
                **message,
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 7, "output_tokens": 1},
            }
            yield sse({"type": "message_start", "message": start}, "message_start")
            for index, block in enumerate(blocks or [{"type": "text", "text": ""}]):
                if block["type"] == "tool_use":
                    opening = {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {**block, "input": {}},
                    }
                    yield sse(opening, "content_block_start")
                    for piece in halves(json.dumps(block["input"])):
                        delta = {"type": "input_json_delta", "partial_json": piece}
                        yield sse(
                            {"type": "content_block_delta", "index": index, "delta": delta},
                            "content_block_delta",
                        )
                else:
                    opening = {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                    yield sse(opening, "content_block_start")
                    for piece in pieces(block["text"]):
                        delta = {"type": "text_delta", "text": piece}
                        yield sse(
                            {"type": "content_block_delta", "index": index, "delta": delta},
                            "content_block_delta",
                        )
                yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            end = {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if uses else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
            yield sse(end, "message_delta")
            yield sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(events(), media_type="text/event-stream")

    # --- Gemini: /v1[beta]/models/<model>:<method> ------------------------------------------------

    async def gemini(self, request: Request) -> Response:
        behaviour, body = await self._take("gemini", request)
        errors = {
            "throttle": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
            "auth": (403, "PERMISSION_DENIED", "API key not valid. Please pass a valid API key."),
            "context": (
                400,
                "INVALID_ARGUMENT",
                "The input token count exceeds the maximum number of tokens allowed.",
            ),
            "down": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        }
        if behaviour in errors:
            status, kind, message = errors[behaviour]
            return JSONResponse(
                {"error": {"code": status, "message": message, "status": kind}}, status_code=status
            )
        model, _, method = request.path_params["rest"].rpartition(":")
        if method == "batchEmbedContents":
            texts = [r["content"]["parts"][0]["text"] for r in body["requests"]]
            return JSONResponse({"embeddings": [{"values": vector(t)} for t in texts]})
        last = body["contents"][-1]["parts"]
        declared = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations", [])]
        calling = body.get("toolConfig", {}).get("functionCallingConfig", {})
        call = None
        generation = body.get("generationConfig") or {}
        if generation.get("responseMimeType") == "application/json" and not (
            declared and calling.get("mode") == "ANY"
        ):
            schema = generation.get("responseJsonSchema") or {
                "type": "object",
                "properties": {"answer": {"enum": ["yes"]}},
            }
            text = "not json" if behaviour == "badjson" else json.dumps(conforming_to(schema))
        elif "functionResponse" in last[0]:
            text = reply_for("gemini", f"tool said {last[0]['functionResponse']['response']['result']}")
        elif declared and calling.get("mode") != "NONE":
            name = (calling.get("allowedFunctionNames") or [declared[0]["name"]])[0]
            # as Gemini's thinking models do, with a thought signature the caller must send back
            signature = base64.b64encode(b"thought-1").decode()
            call = {
                "functionCall": {"name": name, "args": {"input": last[0]["text"]}},
                "thoughtSignature": signature,
            }
            text = ""
        else:
            text = "" if behaviour == "empty" else reply_for("gemini", last[0]["text"])
        usage = {
            "promptTokenCount": 6,
            "candidatesTokenCount": len(pieces(text)),
            "totalTokenCount": 6 + len(pieces(text)),
        }

        def candidate(piece: str, finish: str | None) -> dict[str, Any]:
            found: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
            if finish:
                found["finishReason"] = finish
            return found

        if call:  # a function call comes whole, in one response or one chunk
            answer = {"content": {"role": "model", "parts": [call]}, "index": 0, "finishReason": "STOP"}
            data = {"candidates": [answer], "usageMetadata": usage, "modelVersion": model}
            if method == "generateContent":
                return JSONResponse(data)
            return StreamingResponse(
                iter([f"data: {json.dumps(data)}\r\n\r\n"]), media_type="text/event-stream"
            )
        if method == "generateContent":
            return JSONResponse(
                {"candidates": [candidate(text, "STOP")], "usageMetadata": usage, "modelVersion": model}
            )

        async def events() -> AsyncIterator[str]:
            chunks = pieces(text) or [""]
            for index, piece in enumerate(chunks):
                last = index == len(chunks) - 1
                data: dict[str, Any] = {
                    "candidates": [candidate(piece, "STOP" if last else None)],
                    "modelVersion": model,
                }
                if last:
                    data["usageMetadata"] = usage
                yield f"data: {json.dumps(data)}\r\n\r\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # --- Bedrock runtime: /model/<id>/converse, /converse-stream, /invoke -----------------------

    async def bedrock(self, request: Request) -> Response:
        behaviour, body = await self._take("bedrock", request)
        errors = {
            "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
            "auth": (
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            "context": (400, "ValidationException", "Input is too long for requested model."),
            "down": (503, "ServiceUnavailableException", "Service is temporarily unavailable."),
        }
        if behaviour in errors:
            status, kind, message = errors[behaviour]
            return JSONResponse(
                {"message": message}, status_code=status, headers={"x-amzn-ErrorType": f"{kind}:"}
            )
        operation = request.path_params["rest"].rpartition("/")[2]
        if operation == "invoke":
            return JSONResponse({"embedding": vector(body["inputText"]), "inputTextTokenCount": 3})
        block = body["messages"][-1]["content"][0]
        config = body.get("toolConfig") or {}
        schemas = {
            t["toolSpec"]["name"]: t["toolSpec"]["inputSchema"]["json"] for t in config.get("tools", [])
        }
        chosen = config.get("toolChoice", {}).get("tool", {}).get("name")
        if "toolResult" in block and "any" in config.get("toolChoice", {}) and ANSWER_TOOL in schemas:
            chosen = ANSWER_TOOL
        use = None
        if "toolResult" in block and not chosen:
            output = block["toolResult"]["content"][0]
            text = reply_for("bedrock", f"tool said {output.get('text', json.dumps(output.get('json')))}")
        elif schemas:
            name = chosen or next(iter(schemas))
            arguments = arguments_for(name, schemas[name], block.get("text", ""), behaviour)
            use, text = {"toolUseId": "tooluse_1", "name": name, "input": json.loads(arguments)}, ""
        else:
            text = "" if behaviour == "empty" else reply_for("bedrock", block["text"])
        usage = {"inputTokens": 8, "outputTokens": len(pieces(text)), "totalTokens": 8 + len(pieces(text))}
        stop = "tool_use" if use else "end_turn"
        if operation == "converse":
            content = [{"toolUse": use}] if use else [{"text": text}]
            return JSONResponse(
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": stop,
                    "usage": usage,
                    "metrics": {"latencyMs": 1},
                }
            )

        def events() -> Iterator[bytes]:
            def event(kind: str, payload: dict[str, Any]) -> bytes:
                headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
                return event_stream_message(headers, json.dumps(payload).encode())

            yield event("messageStart", {"role": "assistant"})
            if use:
                start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
                yield event("contentBlockStart", {"start": start, "contentBlockIndex": 0})
                for piece in halves(json.dumps(use["input"])):
                    yield event(
                        "contentBlockDelta", {"delta": {"toolUse": {"input": piece}}, "contentBlockIndex": 0}
                    )
            for piece in pieces(text):
                yield event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
            yield event("contentBlockStop", {"contentBlockIndex": 0})
            yield event("messageStop", {"stopReason": stop})
            yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}})

        return StreamingResponse(events(), media_type="application/vnd.amazon.eventstream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
                Route("/v1/embeddings", self.openai_embeddings, methods=["POST"]),
                Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
                # google-genai calls /v1/ or /v1beta/ depending on its version
                Route("/v1/models/{rest:path}", self.gemini, methods=["POST"]),
                Route("/v1beta/models/{rest:path}", self.gemini, methods=["POST"]),
                Route("/model/{rest:path}", self.bedrock, methods=["POST"]),
            ]
        )

"""AWS Bedrock backend on boto3: the Converse API (`converse` / `converse_stream`) for chat, and
`invoke_model` for Titan and Cohere embeddings. Credentials and region come from the standard AWS
chain (environment, profile, instance or pod role); nothing secret is configured here."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.common.config import ConfigError
from services.common.errors import MeshError
from services.common.registry import BedrockConfig
from services.inference.backends.base import (
    Delta,
    Embeddings,
    Event,
    Finished,
    FinishReason,
    GenerationInput,
    Message,
    ToolCall,
    ToolCallDelta,
    Tooling,
)
from services.inference.backends.cloud import (
    CloudBackend,
    OutputTool,
    ToolCalls,
    add_tool_result,
    calls_made,
    finish_reason,
)
from services.inference.backends.provider_errors import classify
from services.inference.config import InferenceSettings

_LENGTH = ("max_tokens", "model_context_window_exceeded")
_FILTERED = ("content_filtered", "guardrail_intervened")
# Error codes (also those that arrive inside a stream, where the HTTP status was 200) as HTTP statuses.
_STATUS_OF_CODE = {
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ModelStreamErrorException": 503,
    "ModelNotReadyException": 503,
    "ModelTimeoutException": 408,
    "ModelErrorException": 500,
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ExpiredTokenException": 403,
}


class BedrockBackend(CloudBackend[Any]):
    kind = "bedrock"
    provider = "bedrock"

    def __init__(self, name: str, config: BedrockConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)
        self.config: BedrockConfig = config
        session = boto3.Session(region_name=config.region)
        if session.get_credentials() is None:
            raise ConfigError(
                f"model {name!r} (bedrock) found no AWS credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role"
            )
        if not session.region_name:
            raise ConfigError(
                f"model {name!r} (bedrock) has no region: set `region` in the registry or AWS_REGION"
            )
        self._session = session

    def _connect(self) -> Any:
        # boto3 clients are thread-safe; calls run on worker threads so the event loop never blocks.
        return self._session.client(
            "bedrock-runtime",
            endpoint_url=self.config.base_url,
            config=Config(
                read_timeout=self.config.timeout_s,
                connect_timeout=min(10.0, self.config.timeout_s),
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )

    async def _disconnect(self, client: Any) -> None:
        client.close()

    def _error(self, exc: Exception) -> MeshError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            raw_code = str(error.get("Code") or "")
            code = raw_code[:1].upper() + raw_code[1:]  # stream errors arrive as "throttlingException"
            status = _STATUS_OF_CODE.get(code) or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode"
            )
            return classify(
                self.provider,
                self.name,
                exc,
                status=status,
                message=str(error.get("Message") or ""),
                provider_code=code,
            )
        return classify(self.provider, self.name, exc)

    def _params(self, request: GenerationInput, tooling: Tooling | None) -> dict[str, Any]:
        system, messages = self.split_system(request)
        sampling = request.sampling
        inference: dict[str, Any] = {"maxTokens": sampling.max_tokens}
        if sampling.temperature is not None:
            inference["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            inference["topP"] = sampling.top_p
        if sampling.stop:
            inference["stopSequences"] = list(sampling.stop)
        params: dict[str, Any] = {
            "modelId": self.config.model_id,
            "messages": _turns(messages),
            "inferenceConfig": inference,
        }
        if system:
            params["system"] = [{"text": system}]
        if config := _tool_config(tooling, messages):
            params["toolConfig"] = config
        return params

    def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        # JSON answers come as a tool call the model must make (Converse takes no schema).
        output = OutputTool(request.constraint, request.tooling)
        tooling = output.tooling()
        return output.answers(self._events(self._params(request, tooling), tooling, request.one_shot))

    async def _events(
        self, params: dict[str, Any], tooling: Tooling | None, one_shot: bool
    ) -> AsyncGenerator[Event, None]:
        # Converse has no tool_choice "none": with tools declared for the history, calls are dropped.
        calling = tooling is None or tooling.choice != "none"
        if one_shot:
            try:
                response = await asyncio.to_thread(self.client.converse, **params)
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc) from exc
            content = response.get("output", {}).get("message", {}).get("content", [])
            text = "".join(block.get("text", "") for block in content)
            made = tuple(
                ToolCall(use["toolUseId"], use["name"], json.dumps(use.get("input", {}), ensure_ascii=False))
                for use in (block["toolUse"] for block in content if "toolUse" in block and calling)
            )
            totals = response.get("usage", {})
            if text:
                yield Delta(text, totals.get("outputTokens", 0))
            for index, call in enumerate(made):
                yield ToolCallDelta(index, call.id, call.name, call.arguments)
            yield Finished(
                text,
                totals.get("inputTokens", 0),
                totals.get("outputTokens", 0),
                _finish(response.get("stopReason"), made),
                tool_calls=made,
            )
            return

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        stopped = threading.Event()

        def emit(event: dict[str, Any] | BaseException | None) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        reader = loop.run_in_executor(None, self._read_stream, params, emit, stopped)
        parts: list[str] = []
        calls = ToolCalls()
        # Bedrock numbers content blocks (text and toolUse alike); OpenAI's deltas number calls.
        call_index: dict[int, int] = {}
        reason: str | None = None
        usage: dict[str, Any] = {}
        try:
            while (event := await events.get()) is not None:
                if isinstance(event, ClientError | BotoCoreError):
                    raise self._error(event) from event
                if isinstance(event, BaseException):
                    raise event
                if "contentBlockStart" in event:
                    start = event["contentBlockStart"]
                    if (use := start.get("start", {}).get("toolUse")) and calling:
                        call_index[start.get("contentBlockIndex", 0)] = len(call_index)
                        yield calls.add(ToolCallDelta(len(call_index) - 1, use["toolUseId"], use["name"]))
                elif "contentBlockDelta" in event:
                    block = event["contentBlockDelta"]
                    delta = block.get("delta", {})
                    if "toolUse" in delta:
                        if not calling:
                            continue
                        index = call_index[block.get("contentBlockIndex", 0)]
                        yield calls.add(ToolCallDelta(index, arguments=delta["toolUse"].get("input", "")))
                    elif text := delta.get("text", ""):
                        parts.append(text)
                        yield Delta(text, 0)
                elif "messageStop" in event:
                    reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = event["metadata"].get("usage", {})
        finally:
            stopped.set()  # the reader closes the HTTP stream at its next event
            await asyncio.shield(reader)
        yield Finished(
            "".join(parts),
            usage.get("inputTokens", 0),
            usage.get("outputTokens", 0),
            _finish(reason, calls),
            tool_calls=calls.done(),
        )

    def _read_stream(
        self,
        params: dict[str, Any],
        emit: Callable[[dict[str, Any] | BaseException | None], None],
        stopped: threading.Event,
    ) -> None:
        """On a worker thread: call converse_stream and hand each event to the loop, then None."""
        stream = None
        try:
            stream = self.client.converse_stream(**params)["stream"]
            for event in stream:
                if stopped.is_set():
                    break
                emit(event)
        except BaseException as exc:  # handed to the event loop, which raises it in the RPC
            emit(exc)
        finally:
            if stream is not None:
                stream.close()
            emit(None)

    async def embed(self, inputs: list[str]) -> Embeddings:
        try:
            if self.config.model_id.startswith("cohere."):
                body = await self._invoke({"texts": inputs, "input_type": "search_document"})
                vectors = body.get("embeddings", [])
                if isinstance(vectors, dict):  # embedding_types responses nest by type
                    vectors = vectors.get("float", [])
                return Embeddings(vectors=[list(v) for v in vectors], prompt_tokens=0)
            # Titan embeds one text per call.
            bodies = await asyncio.gather(*(self._invoke({"inputText": text}) for text in inputs))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc) from exc
        return Embeddings(
            vectors=[list(body.get("embedding", [])) for body in bodies],
            prompt_tokens=sum(int(body.get("inputTextTokenCount", 0)) for body in bodies),
        )

    async def _invoke(self, body: dict[str, Any]) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            response = self.client.invoke_model(
                modelId=self.config.model_id,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            result: dict[str, Any] = json.loads(response["body"].read())
            return result

        return await asyncio.to_thread(call)


def _finish(reason: str | None, calls: object) -> FinishReason:
    return calls_made(finish_reason(reason, _LENGTH, _FILTERED), calls)


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """Turns in the Converse API's shape: an assistant's calls are toolUse blocks; tool results are
    toolResult blocks of a user turn (one user turn for the results of one assistant turn's calls)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            # Converse refuses blank text: an empty result is an empty JSON object.
            output: list[dict[str, Any]] = (
                [{"text": message.content}] if message.content.strip() else [{"json": {}}]
            )
            result = {"toolResult": {"toolUseId": message.tool_call_id, "content": output}}
            add_tool_result(turns, result, lambda block: "toolResult" in block)
            continue
        content: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
        content += [
            {"toolUse": {"toolUseId": c.id, "name": c.name, "input": json.loads(c.arguments or "{}")}}
            for c in message.tool_calls
        ]
        if turns and turns[-1]["role"] == message.role == "user":
            # Converse wants turns to alternate: the user's text after tool results joins their turn.
            turns[-1]["content"].extend(content)
            continue
        turns.append({"role": message.role, "content": content or [{"text": " "}]})
    return turns


def _tool_config(tooling: Tooling | None, messages: list[Message]) -> dict[str, Any] | None:
    """toolConfig: the tools and the choice. The Converse API has no "none": such a request sends no
    tools, unless its conversation holds tool turns (which need the tools declared)."""
    if tooling is None or not tooling.tools:
        return None
    tool_turns = any(m.role == "tool" or m.tool_calls for m in messages)
    if tooling.choice == "none" and not tool_turns:
        return None
    config: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "inputSchema": {"json": t.schema()},
                }
            }
            for t in tooling.tools
        ]
    }
    if tooling.choice == "required":
        config["toolChoice"] = {"any": {}}
    elif tooling.choice == "function":
        config["toolChoice"] = {"tool": {"name": tooling.function}}
    return config

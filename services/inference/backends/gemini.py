"""Google Gemini backend on the official `google-genai` SDK (the Gemini Developer API)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from google import genai
from google.genai import errors, types

from services.common.errors import MeshError
from services.common.registry import GeminiConfig
from services.inference.backends.base import (
    Delta,
    Embeddings,
    Event,
    Finished,
    GenerationInput,
    Message,
    ToolCall,
    ToolCallDelta,
    Tooling,
)
from services.inference.backends.cloud import CloudBackend, ToolCalls, calls_made, finish_reason
from services.inference.backends.provider_errors import classify, is_transport_error
from services.inference.config import InferenceSettings

_LENGTH = ("MAX_TOKENS",)
_FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII")


def _reason(response: types.GenerateContentResponse) -> str | None:
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None or candidate.finish_reason is None:
        return None
    return str(getattr(candidate.finish_reason, "value", candidate.finish_reason))


def _parts(response: types.GenerateContentResponse) -> list[types.Part]:
    candidate = response.candidates[0] if response.candidates else None
    return list(candidate.content.parts or []) if candidate and candidate.content else []


def _text(response: types.GenerateContentResponse) -> str:
    # Not response.text, which warns when the parts hold function calls too.
    return "".join(part.text for part in _parts(response) if part.text and not part.thought)


# Gemini's thought signature rides in the call's id, after this mark: every client sends the id
# back with the call, and Gemini must get the signature back with it (thinking models refuse a call
# returned without one).
_SIGNATURE = "~sig~"


def _call_id(call: types.FunctionCall, signature: bytes | None) -> str:
    """The call's id (Gemini's may have none: the mesh gives one, unique in the conversation, as a
    tool turn must name the call it answers), with its thought signature when it has one."""
    call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
    return call_id + _SIGNATURE + base64.urlsafe_b64encode(signature).decode() if signature else call_id


def _split_id(call_id: str) -> tuple[str, bytes | None]:
    plain, _, signature = call_id.partition(_SIGNATURE)
    try:
        return plain, base64.urlsafe_b64decode(signature) if signature else None
    except ValueError:  # not one the mesh made: the id as it came
        return call_id, None


def _calls(response: types.GenerateContentResponse) -> tuple[ToolCall, ...]:
    """The function calls of a response."""
    return tuple(
        ToolCall(
            _call_id(part.function_call, part.thought_signature),
            part.function_call.name or "",
            json.dumps(part.function_call.args or {}, ensure_ascii=False),
        )
        for part in _parts(response)
        if part.function_call
    )


def _contents(messages: list[Message]) -> list[types.Content]:
    """Turns in Gemini's shape: an assistant's tool calls are function_call parts of a model turn; a
    tool's result is a function_response part (named by the call's function) of a user turn."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    contents: list[types.Content] = []
    for message in messages:
        if message.role == "tool":
            response = types.FunctionResponse(
                id=_split_id(message.tool_call_id)[0],
                name=names.get(message.tool_call_id, ""),
                response={"result": message.content},
            )
            part = types.Part(function_response=response)
            previous = contents[-1].parts or [] if contents else []
            if previous and previous[-1].function_response:  # the results of one turn's calls: one turn
                previous.append(part)
            else:
                contents.append(types.Content(role="user", parts=[part]))
            continue
        parts = [types.Part(text=message.content)] if message.content or not message.tool_calls else []
        for call in message.tool_calls:
            call_id, signature = _split_id(call.id)
            function_call = types.FunctionCall(
                id=call_id, name=call.name, args=json.loads(call.arguments or "{}")
            )
            parts.append(types.Part(function_call=function_call, thought_signature=signature))
        contents.append(types.Content(role="model" if message.role == "assistant" else "user", parts=parts))
    return contents


def _tooling(tooling: Tooling) -> tuple[list[types.Tool], types.ToolConfig]:
    declarations = [
        types.FunctionDeclaration(
            name=t.name, description=t.description or None, parameters_json_schema=t.schema()
        )
        for t in tooling.tools
    ]
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}[tooling.choice]
    config = types.FunctionCallingConfig(
        mode=types.FunctionCallingConfigMode(mode),
        allowed_function_names=[tooling.function] if tooling.choice == "function" else None,
    )
    return [types.Tool(function_declarations=declarations)], types.ToolConfig(function_calling_config=config)


class GeminiBackend(CloudBackend[genai.Client]):
    kind = "gemini"
    provider = "gemini"

    def __init__(self, name: str, config: GeminiConfig, settings: InferenceSettings) -> None:
        super().__init__(name, config)

    def _connect(self) -> genai.Client:
        # No retry_options: the SDK makes one attempt.
        return genai.Client(
            api_key=self.api_key,
            http_options=types.HttpOptions(
                base_url=self.config.base_url, timeout=int(self.config.timeout_s * 1000)
            ),
        )

    async def _disconnect(self, client: genai.Client) -> None:
        await client.aio.aclose()

    @property
    def models(self) -> Any:
        return self.client.aio.models

    def _error(self, exc: Exception) -> MeshError:
        if not isinstance(exc, errors.APIError) and not is_transport_error(exc):
            raise exc  # not the provider's failure but ours: INTERNAL, traceback in the log
        if isinstance(exc, errors.APIError):
            return classify(
                self.provider,
                self.name,
                exc,
                status=exc.code,
                message=str(exc.message or ""),
                provider_code=str(exc.status or ""),
            )
        return classify(self.provider, self.name, exc)

    def _params(self, request: GenerationInput) -> dict[str, Any]:
        system, messages = self.split_system(request)
        sampling = request.sampling
        config = types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            stop_sequences=list(sampling.stop) or None,
        )
        if request.tooling is not None and request.tooling.tools:
            tools, config.tool_config = _tooling(request.tooling)
            config.tools = list(tools)
        if (constraint := request.constraint) is not None:  # JSON only: grammars are refused up front
            config.response_mime_type = "application/json"
            if constraint.kind == "json_schema":
                config.response_json_schema = constraint.json_schema
        return {"model": self.config.model_id, "contents": _contents(messages), "config": config}

    async def generate(self, request: GenerationInput) -> AsyncGenerator[Event, None]:
        params = self._params(request)
        if request.one_shot:
            try:
                response = await self.models.generate_content(**params)
            except Exception as exc:
                raise self._error(exc) from exc
            text = _text(response)
            made = _calls(response)
            usage = response.usage_metadata
            completion = (usage.candidates_token_count or 0) if usage else 0
            if text:
                yield Delta(text, completion)
            for index, call in enumerate(made):
                yield ToolCallDelta(index, call.id, call.name, call.arguments)
            yield Finished(
                text,
                (usage.prompt_token_count or 0) if usage else 0,
                completion,
                calls_made(finish_reason(_reason(response), _LENGTH, _FILTERED), made),
                tool_calls=made,
            )
            return

        parts: list[str] = []
        calls = ToolCalls()
        count = 0
        reason: str | None = None
        prompt_tokens = completion_tokens = 0
        try:
            stream = await self.models.generate_content_stream(**params)
            try:
                async for chunk in stream:
                    if chunk.usage_metadata:
                        prompt_tokens = chunk.usage_metadata.prompt_token_count or prompt_tokens
                        completion_tokens = chunk.usage_metadata.candidates_token_count or completion_tokens
                    reason = _reason(chunk) or reason
                    if text := _text(chunk):
                        parts.append(text)
                        yield Delta(text, 0)
                    # Gemini sends each function call whole, in one chunk.
                    for call in _calls(chunk):
                        yield calls.add(ToolCallDelta(count, call.id, call.name, call.arguments))
                        count += 1
            finally:
                await stream.aclose()  # leaving early closes the HTTP response
        except Exception as exc:
            raise self._error(exc) from exc
        yield Finished(
            "".join(parts),
            prompt_tokens,
            completion_tokens,
            calls_made(finish_reason(reason, _LENGTH, _FILTERED), calls),
            tool_calls=calls.done(),
        )

    async def embed(self, inputs: list[str]) -> Embeddings:
        try:
            response = await self.models.embed_content(model=self.config.model_id, contents=inputs)
        except Exception as exc:
            raise self._error(exc) from exc
        vectors = [list(embedding.values or []) for embedding in response.embeddings or []]
        return Embeddings(vectors=vectors, prompt_tokens=0)

"""Generations: turn a request into an inference call under a deadline, and relay what comes back."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import grpc
from llmmesh.v1 import common_pb2, inference_pb2, inference_pb2_grpc, orchestrator_pb2

from services.common.errors import IncompleteGeneration, MeshError, UpstreamError, from_rpc_error
from services.common.request_id import current_request_id, outgoing_metadata
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.errors import GenerationTimeout, InvalidGeneration

log = logging.getLogger("llmmesh.orchestrator")


class Generations:
    """Runs generations on the inference service, streamed or to completion."""

    def __init__(
        self, inference: inference_pb2_grpc.InferenceServiceStub, settings: OrchestratorSettings
    ) -> None:
        self._inference = inference
        self._settings = settings

    def _inference_request(self, spec: orchestrator_pb2.GenerationSpec) -> inference_pb2.GenerateRequest:
        if not spec.prompt.strip():
            raise InvalidGeneration("prompt must not be empty")
        messages = []
        if spec.system:
            messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=spec.system))
        messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=spec.prompt))
        return inference_pb2.GenerateRequest(
            request_id=current_request_id(),
            model=spec.model or self._settings.default_model,
            conversation=common_pb2.Conversation(messages=messages),
            params=spec.params,
        )

    def _timeout(self, caller_time_remaining: float | None) -> float:
        """Our own limit, shortened to the caller's deadline when that comes sooner."""
        limit = self._settings.generation_timeout_s
        return limit if caller_time_remaining is None else min(limit, caller_time_remaining)

    async def stream(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        """Relay the inference stream: deltas as they come, then the final result.

        Closing this iterator cancels the inference call, which stops the model.
        """
        request = self._inference_request(spec)
        timeout = self._timeout(caller_time_remaining)
        call = self._inference.Generate(request, timeout=timeout, metadata=outgoing_metadata())
        finished = False
        try:
            async for response in call:
                yield response
                if response.HasField("result"):
                    finished = True
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise GenerationTimeout(f"the generation did not finish within {timeout:g} s") from exc
            error: MeshError = from_rpc_error(exc)
            if exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                error = UpstreamError(f"model {request.model} failed to generate a response")
            log.warning(
                "inference call failed",
                extra={"model": request.model, "status": exc.code().name, "code": error.code},
            )
            raise error from exc
        finally:
            call.cancel()
        if not finished:
            raise IncompleteGeneration("the model stream ended without a result")

    async def run(
        self, spec: orchestrator_pb2.GenerationSpec, caller_time_remaining: float | None = None
    ) -> common_pb2.GenerationResult:
        """Run to completion and return the final result (which carries the whole text)."""
        result = common_pb2.GenerationResult()
        async for response in self.stream(spec, caller_time_remaining):
            if response.HasField("result"):
                result = response.result
        return result

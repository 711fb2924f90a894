"""An inference pool's typed client: one method per InferenceService RPC (see services/common/client.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from services.common.client import ServiceClient


class InferenceClient(ServiceClient):
    """Calls the InferenceService over one channel: the request id and trace context travel in
    metadata, and every failure arrives as the mesh's own error."""

    stub_class = inference_pb2_grpc.InferenceServiceStub
    # Model calls get the deadline their caller has left; listing models must be quick.
    default_timeout_s = 30.0

    def generate(
        self, request: inference_pb2.GenerateRequest, timeout_s: float | None
    ) -> AsyncGenerator[inference_pb2.GenerateResponse, None]:
        """Streams token deltas as the model produces them, then one final result. Closing the stream cancels the generation."""
        return self._stream(self._stub.Generate, request, timeout_s)

    async def list_models(
        self, request: inference_pb2.ListModelsRequest, timeout_s: float | None = None
    ) -> inference_pb2.ListModelsResponse:
        """The models this process serves and whether each is loaded."""
        return await self._unary(self._stub.ListModels, request, timeout_s)

    async def embed(
        self, request: inference_pb2.EmbedRequest, timeout_s: float | None = None
    ) -> inference_pb2.EmbedResponse:
        """Embedding vectors of the inputs, one per input, in order."""
        return await self._unary(self._stub.Embed, request, timeout_s)

    async def count_tokens(
        self, request: inference_pb2.CountTokensRequest, timeout_s: float | None = None
    ) -> inference_pb2.CountTokensResponse:
        """The prompt tokens an input would be to the model (its turn template applied, as Generate would apply it), by the model's own tokenizer; nothing is generated."""
        return await self._unary(self._stub.CountTokens, request, timeout_s)

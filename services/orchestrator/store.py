"""The orchestrator's client of the store: one call helper, so every store error arrives as a MeshError."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import grpc
from llmmesh.v1 import store_pb2_grpc

from services.common.errors import from_rpc_error

# The store answers from its database; anything slower than this is a store in trouble.
STORE_TIMEOUT_S = 10.0


def request_fingerprint(data: dict[str, Any]) -> str:
    """What an idempotency key is bound to: the same key with another fingerprint is refused."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class StoreClient:
    def __init__(self, stub: store_pb2_grpc.StoreServiceStub) -> None:
        self.stub = stub

    async def call(self, method: str, request: Any) -> Any:
        """Call a StoreService method with the request id; a failure raises the store's own error."""
        try:
            return await getattr(self.stub, method)(request, timeout=STORE_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc

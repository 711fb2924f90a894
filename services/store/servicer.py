"""StoreService gRPC adapter: protobuf in, repository call, protobuf out."""

from __future__ import annotations

import grpc
from llmmesh.v1 import store_pb2, store_pb2_grpc

from services.store.repository import Repository


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    async def DescribeStore(
        self, request: store_pb2.DescribeStoreRequest, context: grpc.aio.ServicerContext
    ) -> store_pb2.DescribeStoreResponse:
        description = await self.repository.describe()
        return store_pb2.DescribeStoreResponse(
            dialect=description.dialect,
            server_version=description.server_version,
            schema_revision=description.schema_revision,
        )

"""Inference service process: NOT_SERVING until its model is loaded, then one streaming Generate RPC."""

from __future__ import annotations

from llmmesh.v1 import inference_pb2, inference_pb2_grpc

from services.common.server import MeshServer, run_service
from services.inference.backends import create_backend
from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings
from services.inference.service import InferenceService
from services.inference.servicer import InferenceServicer

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def create_server(settings: InferenceSettings, backend: Backend | None = None) -> tuple[MeshServer, int]:
    """Build the inference server bound to its port; the model loads when the server starts."""
    backend = backend or create_backend(settings)
    service = InferenceService([backend], settings)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(service), s),
    )
    server.on_startup(backend.load)
    server.on_cleanup(service.close)
    return server, server.bind()


def serve() -> int:
    return run_service("inference", InferenceSettings(), create_server)

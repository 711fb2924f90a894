"""Orchestrator service process."""

from __future__ import annotations

from llmmesh.v1 import inference_pb2_grpc, orchestrator_pb2, orchestrator_pb2_grpc, store_pb2_grpc

from services.common.grpc_options import create_channel
from services.common.server import MeshServer, run_service
from services.orchestrator.config import OrchestratorSettings
from services.orchestrator.generation import Generations
from services.orchestrator.servicer import OrchestratorServicer
from services.orchestrator.sessions import SessionRuns

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name


def create_server(settings: OrchestratorSettings) -> tuple[MeshServer, int]:
    """Build the orchestrator bound to its port, with its channels to the inference and store services."""
    inference_channel = create_channel(settings.inference_addr)
    store_channel = create_channel(settings.store_addr)
    generations = Generations(inference_pb2_grpc.InferenceServiceStub(inference_channel), settings)
    sessions = SessionRuns(store_pb2_grpc.StoreServiceStub(store_channel), generations)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            OrchestratorServicer(generations, sessions), s
        ),
    )
    server.on_cleanup(inference_channel.close)
    server.on_cleanup(store_channel.close)
    return server, server.bind()


def serve() -> int:
    return run_service("orchestrator", OrchestratorSettings(), create_server)

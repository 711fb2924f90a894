"""Inference service process: hosts its pool's models of the registry behind Generate and Embed.

It reports NOT_SERVING until the models marked `load: startup` are loaded and every provider client
is built.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmmesh.inference.v1 import inference_pb2, inference_pb2_grpc

from services.common.config import ConfigError
from services.common.registry import (
    LlamaCppConfig,
    Registry,
    SentenceEncoderConfig,
    VllmConfig,
    load_registry,
)
from services.common.server import MeshServer, run_service
from services.inference.backends import create_backend
from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings
from services.inference.models import ModelHost
from services.inference.service import InferenceService
from services.inference.servicer import InferenceServicer

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _loaded_at_startup(registry: Registry, pool: str) -> list[str]:
    return [
        name
        for name, config in registry.models_in_pool(pool).items()
        if not isinstance(config, LlamaCppConfig | SentenceEncoderConfig | VllmConfig)
        or config.load == "startup"
    ]


def create_server(
    settings: InferenceSettings, registry: Registry | None = None, backends: Iterable[Backend] | None = None
) -> tuple[MeshServer, int]:
    """Build the inference server bound to its port; models load when the server starts.

    `backends` replaces the registry's models (tests host a scripted backend this way).
    """
    registry = registry or load_registry(settings.registry_path)
    if backends is None:
        configs = registry.models_in_pool(settings.pool)
        if not configs:
            raise ConfigError(f"the registry has no models in pool {settings.pool!r} (INFERENCE_POOL)")
        backends = [create_backend(name, config, settings) for name, config in configs.items()]
        at_startup = _loaded_at_startup(registry, settings.pool)
    else:
        backends = list(backends)
        at_startup = [backend.name for backend in backends]
    host = ModelHost(backends, settings.max_loaded_models, settings.idle_unload_s, at_startup)
    service = InferenceService(host, settings)
    server = MeshServer(settings)
    server.add_service(
        SERVICE_NAME,
        lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(InferenceServicer(service), s),
    )
    server.on_startup(host.start)
    server.on_cleanup(host.close)
    return server, server.bind()


def serve() -> int:
    return run_service("inference", InferenceSettings(), create_server)

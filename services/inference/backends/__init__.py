"""Model backends and the factory that picks one from settings."""

from __future__ import annotations

import importlib

from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings


def create_backend(settings: InferenceSettings) -> Backend:
    """The backend named by settings.backend: a built-in name or "module:Class"."""
    if settings.backend == "llama_cpp":
        from services.inference.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(settings)
    module_name, _, class_name = settings.backend.partition(":")
    if not class_name:
        raise ValueError(f"unknown backend {settings.backend!r}: use 'llama_cpp' or 'module:Class'")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(settings)
    return backend

"""Model backends, and the factory that builds the one a registry entry names.

Provider SDKs and vLLM are optional extras, imported only when a model uses them; a model whose SDK
is missing fails the start with the `pip install` line that fixes it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from services.common.config import ConfigError
from services.common.registry import CustomConfig, LlamaCppConfig, ModelConfig
from services.inference import openmp
from services.inference.backends.base import Backend
from services.inference.config import InferenceSettings

# backend name (a llama_cpp model's engine) -> (module of its class, class name, the SDK module it
# needs, the extra that installs it)
_BUILT_IN = {
    "xllamacpp": ("services.inference.backends.xllamacpp", "XllamacppBackend", "xllamacpp", ""),
    "llama_cpp": ("services.inference.backends.llama_cpp", "LlamaCppBackend", "llama_cpp", "llama-cpp"),
    "sentence_encoder": (
        "services.inference.backends.sentence_encoder",
        "SentenceEncoderBackend",
        "tokenizers",
        "",
    ),
    "vllm": ("services.inference.backends.vllm", "VllmBackend", "vllm", "vllm"),
    "openai": ("services.inference.backends.openai", "OpenAIBackend", "openai", "openai"),
    "anthropic": ("services.inference.backends.anthropic", "AnthropicBackend", "anthropic", "anthropic"),
    "gemini": ("services.inference.backends.gemini", "GeminiBackend", "google.genai", "gemini"),
    "bedrock": ("services.inference.backends.bedrock", "BedrockBackend", "boto3", "bedrock"),
}


def _sdk_missing(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return True
    return False


def create_backend(name: str, config: ModelConfig, settings: InferenceSettings) -> Backend:
    """The backend for registry entry `name`; raises ConfigError naming what to install or set."""
    if isinstance(config, CustomConfig):
        module_name, _, class_name = config.backend.partition(":")
        try:
            factory: Callable[..., Backend] = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model {name!r}: cannot load backend {config.backend!r}: {exc}") from None
        return factory(name, config, settings)
    engine = config.engine if isinstance(config, LlamaCppConfig) else config.backend
    module_name, class_name, sdk, extra = _BUILT_IN[engine]
    if isinstance(config, LlamaCppConfig):
        openmp.configure()  # before the engine's library (and libgomp with it) is imported below
    if _sdk_missing(sdk):
        what = f"the {engine} engine" if isinstance(config, LlamaCppConfig) else f"the {engine} backend"
        raise ConfigError(
            f"model {name!r} uses {what}, whose SDK is not installed: pip install 'llm-mesh[{extra}]'"
            if extra
            else f"model {name!r} uses {what}, whose package {sdk} is not installed"
        )
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(name, config, settings)
    return backend

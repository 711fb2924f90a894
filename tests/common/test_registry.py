"""The model registry is validated as a whole at start; the model host loads, evicts and unloads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.config import ConfigError
from services.common.registry import load_registry, parse_registry
from services.inference.backends import create_backend
from services.inference.backends.cloud import CloudBackend
from services.inference.config import InferenceSettings
from services.inference.errors import ModelLoadFailed, NoModelSlot
from services.inference.models import ModelHost
from services.inference.server import create_server as create_inference
from tests.support.fakes import LocalScriptedBackend
from tests.support.mesh import ROOT

GOOD = """
models:
  gemma:
    backend: llama_cpp
    load: on_demand
  claude:
    backend: anthropic
    model_id: claude-haiku-4-5
canned:
  greetings:
    - match: '^hi$'
      reply: Hello!
routes:
  default:
    - canned: greetings
    - model: gemma
    - model: claude
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


def test_a_good_registry_loads(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, GOOD))
    assert list(registry.models) == ["gemma", "claude"]
    assert [str(t) for t in registry.routes["default"]] == ["canned:greetings", "model:gemma", "model:claude"]
    assert registry.canned["greetings"][0].pattern.search("HI")


def test_without_a_file_the_built_in_registry_serves_gemma_on_a_default_route() -> None:
    """Gemma generates; all-MiniLM-L6-v2 embeds (knowledge bases), loaded at its first use."""
    registry = load_registry(None)
    assert list(registry.models) == ["gemma-3-270m", "all-minilm-l6-v2"]
    assert registry.models["all-minilm-l6-v2"].task == "embed"
    assert [str(t) for t in registry.effective_routes()["default"]] == ["model:gemma-3-270m"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  a: {backend: llama_cpp}\n  a: {backend: llama_cpp}\n", "duplicate name 'a' (line 3)"),
        ("models:\n  a: {backend: tensorflow}\n", "unknown backend 'tensorflow'"),
        ("models:\n  a: {backend: openai}\n", "model 'a': model_id: Field required"),
        ("models:\n  a: {backend: llama_cpp, model_id: x}\n", "model_id: Extra inputs are not permitted"),
        (
            "models:\n  a: {backend: llama_cpp}\nroutes:\n  r: [{model: b}]\n",
            "route 'r' names model 'b', which is not defined",
        ),
        (
            "models:\n  a: {backend: llama_cpp}\nroutes:\n  a: [{model: a}]\n",
            "'a' is both a model and a route",
        ),
        (
            "models:\n  a: {backend: llama_cpp}\nroutes:\n  r: [{canned: hello}, {model: a}]\n",
            "route 'r' names canned set 'hello', which is not defined",
        ),
        (
            "models:\n  a: {backend: llama_cpp}\ncanned:\n  c: [{match: '(', reply: x}]\nroutes:\n  default: [{canned: c}, {model: a}]\n",
            "not a valid regular expression",
        ),
        ("models:\n  a: {backend: llama_cpp, pool: gpu}\n", "pool 'gpu', which `pools` does not list"),
        (
            "models:\n  a: {backend: llama_cpp}\nroutes:\n  r: [{model: a}]\n",
            "default_route 'default' is not one",
        ),
        (
            "models:\n  a: {backend: llama_cpp, engine: llama_cpp, slots: 4}\n",
            "the llama_cpp engine has one slot",
        ),
        (
            "models:\n  a: {backend: llama_cpp, engine: vulkan}\n",
            "engine: Input should be 'xllamacpp' or 'llama_cpp'",
        ),
        (
            "models:\n  a: {backend: llama_cpp, slots: 0}\n",
            "slots: Input should be greater than or equal to 1",
        ),
        ("models: {}\n", "models: Dictionary should have at least 1 item"),
        ("models: [\n", "is not valid YAML"),
    ],
)
def test_a_bad_registry_fails_with_a_message_saying_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_registry(write(tmp_path, text))
    assert message in str(caught.value)


def test_a_missing_api_key_fails_the_start_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here either
    registry = parse_registry({"models": {"claude": {"backend": "anthropic", "model_id": "c"}}})
    with pytest.raises(ConfigError) as caught:
        create_inference(InferenceSettings(port=0), registry)
    assert (
        str(caught.value)
        == "model 'claude' needs an API key: set ANTHROPIC_API_KEY in the environment or .env"
    )


def test_an_api_key_may_come_from_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-from-dotenv\n")
    registry = parse_registry({"models": {"claude": {"backend": "anthropic", "model_id": "c"}}})
    backend = create_backend("claude", registry.models["claude"], InferenceSettings())
    assert isinstance(backend, CloudBackend)
    assert backend.api_key == "sk-from-dotenv"


def test_bedrock_without_aws_credentials_fails_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    registry = parse_registry(
        {"models": {"nova": {"backend": "bedrock", "model_id": "n", "region": "us-east-1"}}}
    )
    with pytest.raises(ConfigError) as caught:
        create_inference(InferenceSettings(port=0), registry)
    assert "found no AWS credentials" in str(caught.value)


def test_a_llama_cpp_model_runs_on_the_xllamacpp_engine_unless_it_names_another() -> None:
    registry = parse_registry(
        {
            "models": {
                "batched": {"backend": "llama_cpp"},
                "exact": {"backend": "llama_cpp", "deterministic": True, "slots": 8},
                "classic": {"backend": "llama_cpp", "engine": "llama_cpp"},
            }
        }
    )
    settings = InferenceSettings(port=0)
    backends = {name: create_backend(name, config, settings) for name, config in registry.models.items()}
    assert {name: type(b).__name__ for name, b in backends.items()} == {
        "batched": "XllamacppBackend",
        "exact": "XllamacppBackend",
        "classic": "LlamaCppBackend",
    }
    # Deterministic decodes each request alone, whatever `slots` says.
    assert (backends["batched"].slots, backends["exact"].slots) == (4, 1)  # type: ignore[attr-defined]
    assert all(b.kind == "llama_cpp" for b in backends.values())


def test_the_llama_cpp_engine_without_llama_cpp_python_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
    registry = parse_registry({"models": {"classic": {"backend": "llama_cpp", "engine": "llama_cpp"}}})
    with pytest.raises(ConfigError) as caught:
        create_backend("classic", registry.models["classic"], InferenceSettings(port=0))
    assert "pip install 'llm-mesh[llama-cpp]'" in str(caught.value)


def test_a_custom_backend_that_cannot_be_imported_fails_the_start() -> None:
    registry = parse_registry({"models": {"mine": {"backend": "no_such_module:Engine"}}})
    with pytest.raises(ConfigError) as caught:
        create_inference(InferenceSettings(port=0), registry)
    assert "cannot load backend 'no_such_module:Engine'" in str(caught.value)


def test_a_service_with_a_bad_registry_exits_2_with_the_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  a: {backend: tensorflow}\n")
    env = {**os.environ, "LLM_MESH_REGISTRY": str(path), "INFERENCE_PORT": "0", "LOG_FORMAT": "text"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "inference"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "inference cannot start" in done.stderr
    assert "unknown backend 'tensorflow'" in done.stderr


def host(*backends: LocalScriptedBackend, max_loaded: int = 1, idle_unload_s: float = 0) -> ModelHost:
    return ModelHost(backends, max_loaded=max_loaded, idle_unload_s=idle_unload_s)


async def test_on_demand_models_load_at_first_use_and_the_least_recent_makes_room() -> None:
    a, b = LocalScriptedBackend("a"), LocalScriptedBackend("b")
    models = host(a, b, max_loaded=1)
    await models.start()
    assert (a.loaded, b.loaded) == (False, False)
    async with models.use("a", "generate"):
        assert a.loaded
    async with models.use("b", "generate"):
        assert (a.loaded, b.loaded) == (False, True)
    assert (a.loads, a.unloads, b.loads) == (1, 1, 1)
    await models.close()


async def test_a_model_that_is_generating_is_never_unloaded_to_make_room() -> None:
    a, b = LocalScriptedBackend("a"), LocalScriptedBackend("b")
    models = host(a, b, max_loaded=1)
    async with models.use("a", "generate"):
        with pytest.raises(NoModelSlot):
            async with models.use("b", "generate"):
                pass
        assert a.loaded
    await models.close()


async def test_an_idle_model_is_unloaded_and_loads_again_when_asked() -> None:
    a = LocalScriptedBackend("a")
    models = host(a, max_loaded=2, idle_unload_s=0.2)
    await models.start()
    async with models.use("a", "generate"):
        await asyncio.sleep(0.4)
        assert a.loaded, "in use, so not idle"
    for _ in range(50):
        if not a.loaded:
            break
        await asyncio.sleep(0.05)
    assert not a.loaded
    async with models.use("a", "generate"):
        assert a.loaded
    assert (a.loads, a.unloads) == (2, 1)
    await models.close()


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_registries_are_valid(path: Path) -> None:
    registry = load_registry(path)
    assert registry.default_route in registry.effective_routes()


class BrokenModel(LocalScriptedBackend):
    async def load(self) -> None:
        raise OSError("weights file truncated")


async def test_a_model_that_fails_to_load_is_unavailable_so_routes_fall_back() -> None:
    models = host(BrokenModel("broken"))
    with pytest.raises(ModelLoadFailed) as caught:
        async with models.use("broken", "generate"):
            pass
    assert caught.value.message == "model broken failed to load"
    assert caught.value.status.name == "UNAVAILABLE"
    assert "truncated" not in caught.value.message, "the reason stays in the log"

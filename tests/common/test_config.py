"""Settings a service refuses: named by the environment variable that sets them, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from services.orchestrator.config import OrchestratorSettings
from services.store.config import StoreSettings
from tests.support.mesh import ROOT


def test_a_refused_value_is_named_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_RETRY_ATTEMPTS", "99")
    monkeypatch.setenv("STORE_ADDR", "")
    with pytest.raises(ValidationError) as caught:
        OrchestratorSettings()
    assert OrchestratorSettings.problem(caught.value) == (
        "ORCHESTRATOR_RETRY_ATTEMPTS: Input should be less than or equal to 10"
    )


def test_the_shared_addresses_are_one_unprefixed_variable_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_ADDR", "store.internal:6000")
    monkeypatch.setenv("LLM_MESH_REGISTRY", "/etc/llm-mesh/models.yaml")
    settings = OrchestratorSettings()
    assert (settings.store_addr, str(settings.registry_path)) == (
        "store.internal:6000",
        "/etc/llm-mesh/models.yaml",
    )
    assert settings.inference_addr == "127.0.0.1:50052"
    assert StoreSettings.env_name("port") == "STORE_PORT"


def test_a_service_with_a_bad_setting_exits_2_saying_which() -> None:
    env = {**os.environ, "STORE_PORT": "not-a-port", "PYTHONPATH": f"{ROOT}:{ROOT / 'protos'}"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "store"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "store cannot start: STORE_PORT: Input should be a valid integer" in result.stderr
    assert "Traceback" not in result.stderr

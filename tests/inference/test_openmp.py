"""The OpenMP settings the local engines load with, read back from libgomp itself in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Builds and loads a model's backend as the inference service does, then asks libgomp what it runs with.
LOAD_AND_DISPLAY = """
import asyncio, ctypes
from services.common.registry import LlamaCppConfig
from services.inference.backends import create_backend
from services.inference.config import InferenceSettings

config = LlamaCppConfig(engine="{engine}", context_length=256, threads=1)
backend = create_backend("m", config, InferenceSettings())
asyncio.run(backend.load())
ctypes.CDLL("libgomp.so.1").omp_display_env(1)
"""

ENGINES = ("xllamacpp", "llama_cpp")


def _openmp_environment(script: str, **env: str) -> str:
    """What libgomp printed about its environment after `script` ran in a fresh interpreter."""
    child_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    child_env.update(env, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos")]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=child_env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_loads_with_a_spinning_barrier_that_still_sleeps(engine: str, model_path: Path) -> None:
    shown = _openmp_environment(LOAD_AND_DISPLAY.format(engine=engine))
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in shown
    assert "GOMP_SPINCOUNT = '300000'" in shown


def test_the_operator_s_settings_are_kept(model_path: Path) -> None:
    shown = _openmp_environment(
        LOAD_AND_DISPLAY.format(engine="xllamacpp"),
        OMP_WAIT_POLICY="PASSIVE",
        GOMP_SPINCOUNT="1234",
    )
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in shown
    assert "GOMP_SPINCOUNT = '1234'" in shown


def test_settings_that_come_too_late_are_reported_not_pretended() -> None:
    shown = _openmp_environment(
        "import ctypes, logging\n"
        "logging.basicConfig()\n"
        "ctypes.CDLL('libgomp.so.1')\n"
        "from services.inference import openmp\n"
        "openmp.configure()\n"
        "import os\n"
        "print('left unset' if 'OMP_WAIT_POLICY' not in os.environ else 'set', file=__import__('sys').stderr)\n"
    )
    assert "OpenMP was loaded before the local engines" in shown
    assert "left unset" in shown

"""The OpenMP settings the local engines load with, read back from libgomp itself in a fresh process."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.inference.openmp import SETTINGS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or ctypes.util.find_library("gomp") is None,
    reason="the local engines use GNU libgomp on Linux only; this machine has none to ask",
)

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

ENGINES = (
    "xllamacpp",
    pytest.param(
        "llama_cpp",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("llama_cpp") is None,
            reason="llama-cpp-python (the llama-cpp extra) is not installed",
        ),
    ),
)


def _openmp_environment(script: str, **env: str) -> str:
    """What libgomp printed about its environment after `script` ran in a fresh interpreter."""
    child_env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    child_env.update(env, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "protos")]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=child_env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # One libgomp in the process: the one that printed is the one the engine runs on.
    assert done.stderr.count("OPENMP DISPLAY ENVIRONMENT BEGIN") <= 1, done.stderr[-2000:]
    return done.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_loads_with_a_spinning_barrier_that_still_sleeps(engine: str, model_path: Path) -> None:
    shown = _openmp_environment(LOAD_AND_DISPLAY.format(engine=engine))
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in shown
    assert "GOMP_SPINCOUNT = '300000'" in shown


@pytest.mark.parametrize(
    ("set_by_operator", "shown_policy", "shown_spins"),
    [
        ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1234"}, "PASSIVE", "1234"),
        # One of the pair set: nothing added (a spin count under PASSIVE was not asked for).
        ({"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE", "0"),
        ({"GOMP_SPINCOUNT": "1234"}, "PASSIVE", "1234"),
    ],
)
def test_the_operator_s_settings_are_kept_and_not_completed(
    set_by_operator: dict[str, str], shown_policy: str, shown_spins: str, model_path: Path
) -> None:
    shown = _openmp_environment(LOAD_AND_DISPLAY.format(engine="xllamacpp"), **set_by_operator)
    assert f"OMP_WAIT_POLICY = '{shown_policy}'" in shown
    assert f"GOMP_SPINCOUNT = '{shown_spins}'" in shown


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

"""How llama.cpp's CPU threads wait for each other: OpenMP settings the local engines load with.

Both local engines' CPU code (the xllamacpp wheel and llama-cpp-python) runs each model step on an
OpenMP team, whose threads meet at a barrier after every operation; GNU libgomp spins at a barrier
before it sleeps. By default it spins for about 3 ms, but only 100 times (about a microsecond) once
the process holds more OpenMP threads than it has CPUs, which happens as soon as two local models
are loaded in one inference process (each engine keeps a team of its own). Past that a barrier is a
futex sleep and wake-up, many per token: measured on two cores, a second and third loaded model
made the first 18 % slower per token, idle as they were. OMP_WAIT_POLICY=ACTIVE makes that short
spin 1000, which takes most of the loss back (+6 %), and GOMP_SPINCOUNT keeps the long one at
libgomp's own 3 ms, so an idle engine's threads still go to sleep. See docs/benchmarks/engine.md.

libgomp reads these once, when it is loaded, so they must be in the environment before the first
engine library is imported; a value the operator set is kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("llmmesh.inference.openmp")

SETTINGS = {
    # Spin at a barrier 1000 times, not 100, while more OpenMP threads than CPUs exist.
    "OMP_WAIT_POLICY": "ACTIVE",
    # ACTIVE alone would spin for minutes before sleeping; libgomp's default is 300000 (about 3 ms).
    "GOMP_SPINCOUNT": "300000",
}


def _libgomp_loaded() -> bool:
    try:
        return "libgomp" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: nothing to tell
        return False


def configure() -> None:
    """Put the settings in this process's environment where the operator has not set them; call it
    before importing an engine library."""
    missing = {name: value for name, value in SETTINGS.items() if name not in os.environ}
    if not missing:
        return
    if _libgomp_loaded():
        # Set now, they would only mislead: libgomp has read its environment already.
        log.warning(
            "OpenMP was loaded before the local engines: %s stay at libgomp's defaults",
            ", ".join(missing),
        )
        return
    os.environ.update(missing)

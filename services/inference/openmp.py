"""How llama.cpp's CPU threads wait for each other: OpenMP settings the local engines load with.

Both local engines' CPU code (the xllamacpp wheel and llama-cpp-python) runs each model step on an
OpenMP team, whose threads meet at a barrier after every operation; GNU libgomp spins at a barrier
before it sleeps. By default it spins for about 3 ms, but only 100 times (about a microsecond) once
the process holds more OpenMP threads than it has CPUs, which happens as soon as two local models
are loaded in one inference process (each engine keeps a team of its own). Past that a barrier is a
futex sleep and wake-up, many per token: measured on two cores, a second and third loaded model
made the first 18 % slower per token, idle as they were. OMP_WAIT_POLICY=ACTIVE makes that short
spin 1000, which takes most of the loss back (+6 %), and GOMP_SPINCOUNT keeps the long one at
libgomp's own 3 ms, so an idle engine's threads still go to sleep (KMP_BLOCKTIME does the same for
LLVM's OpenMP runtime, which a llama-cpp-python built with clang may use: under ACTIVE alone its
threads would never sleep). See docs/benchmarks/engine-notes.md.

An OpenMP runtime reads these once, when it is loaded, so they must be in the environment before the
first engine library is imported. They go together: where the operator set any of them, none is
added (ACTIVE with no spin count would spin for minutes; a spin count under PASSIVE was not asked for).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger("llmmesh.inference.openmp")

SETTINGS = {
    # Spin at a barrier 1000 times, not 100, while more OpenMP threads than CPUs exist.
    "OMP_WAIT_POLICY": "ACTIVE",
    # ACTIVE alone would spin for minutes before sleeping; libgomp's default is 300000 (about 3 ms).
    "GOMP_SPINCOUNT": "300000",
    # The same 3 ms for LLVM's runtime (milliseconds), which ACTIVE would otherwise make endless.
    "KMP_BLOCKTIME": "3",
}

# The system libgomp the engines link, as its mapped file is named (libgomp.so.1.0.0); a bundled copy
# such as torch's libgomp-<hash>.so.1 is another library with its own settings.
_LIBGOMP = re.compile(r"/libgomp\.so\.1(\.[0-9.]+)?$")
_warned = False


def _libgomp_loaded() -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return any(_LIBGOMP.search(line) for line in maps.splitlines())


def configure() -> None:
    """Put the settings in this process's environment unless the operator set any of them; call it
    before the first engine library is imported. Linux only (where the engines use libgomp)."""
    global _warned
    if sys.platform != "linux" or any(name in os.environ for name in SETTINGS):
        return
    if _libgomp_loaded():
        # Set now, they would only mislead: libgomp has read its environment already.
        if not _warned:
            _warned = True
            log.warning("OpenMP was loaded before the local engines: it keeps libgomp's default spinning")
        return
    os.environ.update(SETTINGS)

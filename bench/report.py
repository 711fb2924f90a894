"""Statistics, the machine description and Markdown output shared by the benchmarks."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """`median (p99, min-max)` of values, each multiplied by scale: the cells the reports share."""
    cells = [statistics.median(values), percentile(values, 0.99), min(values), max(values)]
    return " | ".join(f"{value * scale:.{digits}f}" for value in cells)


SPREAD_HEADER = "median | p99 | min | max"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return f"{pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        return "RAM unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine() -> str:
    """One line naming the machine and the versions that decide the figures."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{_cpu_model()} ({platform.machine()}), {cores} usable cores, {_memory_gib()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"llama-cpp-python {_version('llama-cpp-python')}, grpcio {_version('grpcio')}, "
        f"SQLAlchemy {_version('sqlalchemy')}, uvicorn {_version('uvicorn')}"
    )


@dataclass
class Part:
    """One benchmark's report: its Markdown and the headline figures the summary and plot use."""

    name: str
    lines: list[str]
    figures: dict[str, float] = field(default_factory=dict)


# The committed figures: written only when a run is asked to publish.
PUBLISHED = Path("docs/benchmarks")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--publish or --out: where a benchmark command writes its reports."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--publish", action="store_true", help=f"write the reports to {PUBLISHED}/ (the committed figures)"
    )
    where.add_argument(
        "--out", type=Path, metavar="DIR", help="write the reports to DIR (default: a fresh temporary folder)"
    )


def output_dir(args: argparse.Namespace) -> Path:
    """docs/benchmarks/ only with --publish; else --out; else a fresh temporary folder, said on stderr
    so a trial run never rewrites the committed figures."""
    if args.publish:
        return PUBLISHED
    if args.out is not None:
        return Path(args.out)
    folder = Path(tempfile.mkdtemp(prefix="llm-mesh-bench-"))
    print(f"bench: reports go to {folder} (--publish writes {PUBLISHED}/)", file=sys.stderr, flush=True)
    return folder


def write_report(path: Path, lines: list[str]) -> None:
    """Write the Markdown report where users read it, and show it."""
    report = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report)
    print(report)

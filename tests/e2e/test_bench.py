"""The benchmark harness still runs: a quick pass of its database-bound parts (cached session runs on
SQLite and PostgreSQL, the job queue on PostgreSQL) writes reports with every row filled in, to a
fresh temporary folder it names, never to the committed docs/benchmarks/ unless asked to publish.

Figures are not asserted here: speed is measured by `python -m bench`, not by timed tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from bench.report import output_dir
from tests.support.mesh import POSTGRES_URL_ENV, ROOT

PUBLISHED = ROOT / "docs" / "benchmarks"
NUMBER = r"\d+(?:\.\d+)?"


def test_reports_go_to_docs_benchmarks_only_when_published(tmp_path: Path) -> None:
    assert output_dir(Namespace(publish=True, out=None)) == Path("docs/benchmarks")
    assert output_dir(Namespace(publish=False, out=tmp_path / "mine")) == tmp_path / "mine"
    first, second = (output_dir(Namespace(publish=False, out=None)) for _ in range(2))
    try:
        assert first != second, "each run gets a fresh folder"
        assert first.is_dir() and not any(first.iterdir())
    finally:
        first.rmdir()
        second.rmdir()


def test_quick_figures_are_not_published() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--publish"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "--quick figures are a smoke run, not for publishing" in run.stderr


@pytest.mark.timeout(300)
def test_a_quick_run_of_the_database_parts_writes_their_reports(tmp_path: Path) -> None:
    postgres = os.environ.get(POSTGRES_URL_ENV)
    if not postgres:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_URL_ENV} (the queue part runs on it)")
    published = {path.name: path.stat().st_mtime_ns for path in PUBLISHED.iterdir()}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--only", "cached,queue"),
            *("--postgres-url", postgres),
        ],
        cwd=ROOT,
        # the temporary folder it makes lands under tmp_path, and goes with it
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "protos")]),
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    said = re.search(r"bench: reports go to (\S+) \(--publish writes docs/benchmarks/\)", run.stderr)
    assert said, run.stderr[-3000:]
    out = Path(said[1])
    assert out.parent == tmp_path and f"bench: reports in {out}" in run.stderr
    assert {path.name: path.stat().st_mtime_ns for path in PUBLISHED.iterdir()} == published, (
        "a run without --publish leaves the committed figures alone"
    )
    cached = (out / "cached-session.md").read_text()
    for database in ("SQLite", "PostgreSQL"):
        for concurrency in (1, 10, 50):
            row = rf"\| {database} \| this tree \| c{concurrency} \|" + rf" {NUMBER} \|" * 7
            row += rf" {NUMBER} · {NUMBER} · {NUMBER} \({NUMBER}\) \|"  # CPU ms per request, by service
            assert re.search(row, cached), f"no figures for {database} at concurrency {concurrency}"
    queue = (out / "queue.md").read_text()
    assert re.search(rf"\| jobs claimed \+ completed / s \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", queue)
    assert not (out / "README.md").exists(), "a partial run does not replace the summary"
    # ... which it prints instead, with the targets of the parts that ran
    assert "| no-op jobs claimed + completed per second, PostgreSQL | ≥ 1000 |" in run.stdout
    assert re.search(
        rf"\| cached session runs/s on SQLite, concurrency 50 \| ≥ 1000 \| {NUMBER} req/s \|", run.stdout
    )
    assert (
        "| added latency, 1-token generation through the gateway (median) | ≤ 3 ms | not run |" in run.stdout
    )

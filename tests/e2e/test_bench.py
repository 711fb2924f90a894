"""The benchmark harness still runs: a quick pass of its database-bound parts (cached session runs on
SQLite and PostgreSQL, the job queue on PostgreSQL) writes reports with every row filled in.

Figures are not asserted here: speed is measured by `python -m bench`, not by timed tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mesh import POSTGRES_URL_ENV, ROOT

NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.timeout(300)
def test_a_quick_run_of_the_database_parts_writes_their_reports(tmp_path: Path) -> None:
    postgres = os.environ.get(POSTGRES_URL_ENV)
    if not postgres:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_URL_ENV} (the queue part runs on it)")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--only", "cached,queue"),
            *("--postgres-url", postgres, "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    cached = (tmp_path / "cached-session.md").read_text()
    for database in ("SQLite", "PostgreSQL"):
        for concurrency in (1, 10, 50):
            row = rf"\| {database} \| {concurrency} \|" + rf" {NUMBER} \|" * 7
            assert re.search(row, cached), f"no figures for {database} at concurrency {concurrency}"
    queue = (tmp_path / "queue.md").read_text()
    assert re.search(rf"\| jobs claimed \+ completed / s \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", queue)
    assert not (tmp_path / "README.md").exists(), "a partial run does not replace the summary"
    # ... which it prints instead, with the targets of the parts that ran
    assert "| no-op jobs claimed + completed per second, PostgreSQL | ≥ 1000 |" in run.stdout
    assert re.search(
        rf"\| cached session runs/s on SQLite, concurrency 50 \| ≥ 1000 \| {NUMBER} req/s \|", run.stdout
    )
    assert (
        "| added latency, 1-token generation through the gateway (median) | ≤ 3 ms | not run |" in run.stdout
    )

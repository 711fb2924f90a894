"""Run every benchmark side by side in one run and write one report per part, a summary with the
targets and the measured figure beside each, and a plot: to docs/benchmarks/ with --publish, else to
--out DIR or a fresh temporary folder (printed), so a trial run never rewrites the committed figures.

Usage: .venv/bin/python -m bench [--quick] [--only overhead,peer,...] [--postgres-url URL]
       [--publish | --out DIR]
(`scripts/bench` installs the `bench` extra first, then runs this.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import batch, cached_session, engine, knowledge, overhead, peer, queue, streaming
from bench.report import Part, add_output_options, machine, output_dir, write_report

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Target:
    """A figure the issue set, how to read it from the parts' figures, and which way is better."""

    label: str
    goal: str
    read: Callable[[dict[str, dict[str, float]]], float | None]
    met: Callable[[float], bool]
    unit: str


def _get(part: str, key: str) -> Callable[[dict[str, dict[str, float]]], float | None]:
    return lambda figures: figures.get(part, {}).get(key)


TARGETS = [
    Target(
        "added latency, 1-token generation through the gateway (median)",
        "≤ 3 ms",
        _get("overhead", "added_ms_gateway"),
        lambda v: v <= 3,
        "ms",
    ),
    Target(
        "tokens/s through the gateway / in-process",
        "≥ 0.95",
        _get("overhead", "tps_ratio_gateway"),
        lambda v: v >= 0.95,
        "x",
    ),
    Target(
        "tokens/s mesh / llama_cpp.server, concurrency 1",
        "≥ 1.00",
        _get("peer", "peer_ratio_c1"),
        lambda v: v >= 1,
        "x",
    ),
    Target(
        "tokens/s mesh / llama_cpp.server, concurrency 4",
        "≥ 1.00",
        _get("peer", "peer_ratio_c4"),
        lambda v: v >= 1,
        "x",
    ),
    Target(
        "aggregate tokens/s, mesh (xllamacpp) / native engine, concurrency 4",
        "≥ 0.90",
        _get("engine", "native_ratio_c4"),
        lambda v: v >= 0.9,
        "x",
    ),
    Target(
        "aggregate tokens/s, mesh (xllamacpp) / native engine, concurrency 1",
        "≥ 0.95",
        _get("engine", "native_ratio_c1"),
        lambda v: v >= 0.95,
        "x",
    ),
    *(
        Target(
            f"aggregate tokens/s, mesh (xllamacpp) / llama_cpp.server, concurrency {c}",
            "≥ 1.00",
            _get("engine", f"peer_ratio_c{c}"),
            lambda v: v >= 1,
            "x",
        )
        for c in engine.CONCURRENCY
    ),
    Target(
        "10th-turn TTFT with prefix reuse / without",
        "≤ 0.50",
        _get("engine", "turn10_ttft_ratio"),
        lambda v: v <= 0.5,
        "x",
    ),
    Target(
        "streaming cost per token through the gateway, vs the native engine",
        "≤ 5 %",
        lambda figures: None if (v := figures.get("engine", {}).get("stream_overhead")) is None else v * 100,
        lambda v: v <= 5,
        "%",
    ),
    Target(
        "cached session runs/s on SQLite, concurrency 50",
        "≥ 1000",
        _get("cached-session", "sqlite_rps_c50"),
        lambda v: v >= 1000,
        "req/s",
    ),
    Target(
        "cached session p99 on SQLite, concurrency 50",
        "≤ 50 ms",
        _get("cached-session", "sqlite_p99_c50"),
        lambda v: v <= 50,
        "ms",
    ),
    Target(
        "no-op jobs claimed + completed per second, PostgreSQL",
        "≥ 1000",
        _get("queue", "jobs_per_s"),
        lambda v: v >= 1000,
        "jobs/s",
    ),
    Target(
        "TTFT added by gateway SSE vs in-process (median)",
        "≤ 10 ms",
        _get("streaming", "ttft_added_sse"),
        lambda v: v <= 10,
        "ms",
    ),
    Target(
        "TTFT added by the OpenAI-compatible SSE vs in-process (median)",
        "≤ 10 ms",
        _get("streaming", "ttft_added_openai"),
        lambda v: v <= 10,
        "ms",
    ),
]


# Part 6 of the benchmarks issue: the mesh against `vllm serve` at 1, 8 and 64 streams on a GPU.
VLLM_NOT_RUN = (
    "the vLLM comparison (mesh vs `vllm serve` at 1, 8 and 64 concurrent streams) is not in the harness "
    "yet: no session that built it had a GPU to write and check it on"
)


def _summary(parts: list[Part], skipped: dict[str, str], command: str, started: float) -> list[str]:
    figures = {part.name: part.figures for part in parts}
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}.",
        "",
        f"Command: `{command}` (from a fresh clone: `scripts/bench --publish`). Run took "
        f"{(time.monotonic() - started) / 60:.1f} min; every part runs its contenders side by side, in "
        "alternation, after warm-up. The plot is [summary.png](summary.png).",
        "",
        "## Targets",
        "",
        "| target | goal | measured | met |",
        "|---|---|---:|---|",
    ]
    for target in TARGETS:
        value = target.read(figures)
        if value is None:
            lines.append(f"| {target.label} | {target.goal} | not run | - |")
        else:
            lines.append(
                f"| {target.label} | {target.goal} | {value:.2f} {target.unit} | "
                f"{'yes' if target.met(value) else '**no**'} |"
            )
    lines += ["", "## Reports", ""]
    lines += [f"- [{part.name}]({part.name}.md)" for part in parts]
    for name, reason in skipped.items():
        lines.append(f"- {name}: not run: {reason}")
    return lines


def _plot(parts: list[Part], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {part.name: part.figures for part in parts}
    panels = [name for name in ("overhead", "peer", "cached-session", "queue") if name in figures]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        f = figures[name]
        if name == "overhead":
            labels = ["in-process", "gateway"]
            ax.bar(
                labels, [f["one_token_ms_in_process"], f["one_token_ms_gateway"]], color=["grey", "tab:blue"]
            )
            ax.set_title("1-token generation, median ms")
        elif name == "peer":
            x = range(2)
            ax.bar([i - 0.2 for i in x], [f["mesh_tps_c1"], f["mesh_tps_c4"]], 0.4, label="mesh")
            ax.bar([i + 0.2 for i in x], [f["peer_tps_c1"], f["peer_tps_c4"]], 0.4, label="llama_cpp.server")
            ax.set_xticks(list(x), ["concurrency 1", "concurrency 4"])
            ax.set_title("decode tokens/s (aggregate)")
            ax.legend(fontsize="small")
        elif name == "cached-session":
            for database in ("sqlite", "postgresql"):
                points = sorted(
                    (int(key.rsplit("c", 1)[1]), value)
                    for key, value in f.items()
                    if key.startswith(f"{database}_rps_c")
                )
                if points:
                    ax.plot([c for c, _ in points], [v for _, v in points], marker="o", label=database)
            ax.axhline(1000, color="red", linestyle="--", linewidth=1, label="target")
            ax.set_xscale("log")
            ax.set_xlabel("concurrency")
            ax.set_title("cached session runs/s")
            ax.legend(fontsize="small")
        else:
            ax.bar(["jobs/s"], [f["jobs_per_s"]], color="tab:green")
            ax.axhline(1000, color="red", linestyle="--", linewidth=1, label="target")
            ax.set_title("no-op jobs/s, PostgreSQL")
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds: a smoke run, not figures to publish"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts: overhead,peer,streaming,cached,queue,knowledge,batch",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LLM_MESH_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server to make scratch databases on (default: %(default)s)",
    )
    add_output_options(parser)
    args = parser.parse_args()
    quick = args.quick
    if quick and args.publish:
        parser.error("--quick figures are a smoke run, not for publishing: drop one of them")
    runs: dict[str, Callable[[], Part]] = {
        # First: the native engine it measures in this process must be the only OpenMP team here. An
        # engine an earlier part ran in-process keeps its threads, and two teams on few cores throttle
        # libgomp's barriers (services/inference/openmp.py), which would slow the anchor.
        "engine": lambda: engine.measure(rounds=1 if quick else 3, tokens=16 if quick else 64),
        "overhead": lambda: overhead.measure(
            reps=8 if quick else 30, decode_reps=2 if quick else 5, decode_tokens=32 if quick else 128
        ),
        "peer": lambda: peer.measure(rounds=1 if quick else 5, tokens=32 if quick else 128),
        "streaming": lambda: streaming.measure(reps=4 if quick else 20, tokens=16 if quick else 32),
        "cached": lambda: cached_session.measure(
            args.postgres_url, seconds=1.0 if quick else 4.0, rounds=1 if quick else 3
        ),
        "queue": lambda: queue.measure(
            args.postgres_url,
            jobs=500 if quick else 5000,
            repeats=1 if quick else 3,
            samples=30 if quick else 300,
        ),
        # Its own PostgreSQL with pgvector (pgserver): the --postgres-url server may lack pgvector.
        "knowledge": lambda: knowledge.measure(quick),
        "batch": lambda: batch.measure(
            args.postgres_url,
            canned_lines=200 if quick else 2000,
            model_lines=4 if quick else 16,
            live=3 if quick else 10,
        ),
    }
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(runs)
    unknown = set(chosen) - set(runs)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}; choose from {', '.join(runs)}")
    out = output_dir(args)
    started = time.monotonic()
    Path(".llm-mesh").mkdir(exist_ok=True)
    parts: list[Part] = []
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        part = runs[name]()
        write_report(out / f"{part.name}.md", part.lines)
        parts.append(part)
    skipped = {"vllm": VLLM_NOT_RUN}
    command = (
        "python -m bench"
        + (" --quick" if quick else "")
        + (f" --only {args.only}" if args.only else "")
        + (" --publish" if args.publish else "")
    )
    summary = _summary(parts, skipped, command, started)
    if set(chosen) == set(runs):
        write_report(out / "README.md", summary)
        _plot(parts, out / "summary.png")
    else:  # a partial run does not replace the published summary
        print("\n".join(summary))
    print(f"bench: reports in {out}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Knowledge base benchmark: the default embedder's cost, ingestion chunks/s, search latency at 10k
and 100k chunks on SQLite and PostgreSQL with pgvector, recall@10 of pgvector's HNSW index against
exact search, and retrieval quality (recall@5, MRR) of the default embedder on the labelled set in
bench/data/knowledge_eval.json (texts written for this repo).

The store's knowledge module runs in this process (no gRPC: what is measured is the database and the
model); the PostgreSQL is a pgserver of the run's own (PostgreSQL 16 with pgvector). Search corpora
are synthetic: clustered random unit vectors of the embedder's 384 dimensions and random words, so
10k and 100k chunks are written in seconds instead of embedded for hours.

Usage: python -m bench.knowledge [--quick] [--out DIR | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from bench.report import Part, add_output_options, machine, output_dir, percentile, write_report
from services.common.registry import DEFAULT_EMBEDDING_MODEL, SentenceEncoderConfig
from services.inference.backends.sentence_encoder import SentenceEncoderBackend, packaged_model_path
from services.inference.config import InferenceSettings
from services.orchestrator.knowledge import chunk_text
from services.store.db import create_engine
from services.store.knowledge import Knowledge, NewChunk, SearchQuery
from services.store.migrate import upgrade_to_head

DIMENSIONS = 384
EVAL_SET = Path(__file__).parent / "data" / "knowledge_eval.json"
PROJECT = "default"
WORDS = [f"w{i}" for i in range(5000)]


def _pgserver() -> tuple[Any, Path, str]:
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="llmmesh-bench-pgvector-"))
    data.chmod(0o755)
    server = pgserver.get_server(data, cleanup_mode="stop")
    socket_dir = server.get_uri().partition("host=")[2]
    return server, data, f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"


async def _fresh(url: str, name: str) -> str:
    """A new, empty database on the server of `url` (PostgreSQL), or a SQLite file."""
    if url.startswith("sqlite"):
        return url
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    connection = await asyncpg.connect(
        parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return parsed.set(database=name).render_as_string(hide_password=False)


def _corpus(count: int, seed: int, centres_seed: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Clustered unit vectors (64 centres, noise around them) and texts of random words. Queries are
    drawn around the same centres as their corpus (centres_seed): a random direction far from every
    chunk has no meaningful nearest neighbours (all about equally far), which no real query is."""
    centres = np.random.default_rng(seed if centres_seed is None else centres_seed).normal(
        size=(64, DIMENSIONS)
    )
    rng = np.random.default_rng(seed + 1_000_003)
    vectors = centres[rng.integers(0, 64, count)] + 0.6 * rng.normal(size=(count, DIMENSIONS))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chooser = random.Random(seed)
    texts = [" ".join(chooser.choices(WORDS, k=30)) for _ in range(count)]
    return vectors.astype(np.float32), texts


async def _fill(knowledge: Knowledge, base_id: str, vectors: np.ndarray, texts: list[str]) -> float:
    """Write the corpus as documents of 1000 chunks; seconds taken."""
    started = time.perf_counter()
    for first in range(0, len(texts), 1000):
        document, _ = await knowledge.add_document(
            PROJECT, base_id, f"doc {first}", "text/plain", f"document {first}", {"n": first}, None
        )
        rows = range(first, min(first + 1000, len(texts)))
        for batch in range(rows.start, rows.stop, 500):
            chunks = [
                NewChunk(i - first, texts[i], 0, len(texts[i]), vectors[i].tolist())
                for i in range(batch, min(batch + 500, rows.stop))
            ]
            await knowledge.put_chunks(PROJECT, document.id, 1, chunks, len(rows))
        await knowledge.finish_document(PROJECT, document.id, 1, len(rows))
    if knowledge.engine.dialect.name == "postgresql":
        # Fresh statistics, as autovacuum would have them: with none, the planner takes the table for
        # empty and scans the knowledge base's rows through the b-tree instead of the HNSW index.
        async with knowledge.engine.connect() as connection:
            await connection.execute(text("ANALYZE kb_chunks"))
            await connection.execute(text("ANALYZE kb_documents"))
            await connection.commit()
    return time.perf_counter() - started


async def _search_figures(url: str, sizes: list[int], queries: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        database = await _fresh(url, f"bench_kb_{size}")
        engine = create_engine(database)
        try:
            await upgrade_to_head(engine)
            knowledge = Knowledge(engine)
            base = await knowledge.create_knowledge_base(PROJECT, f"bench {size}", "", {}, "bench", 0, None)
            vectors, texts = _corpus(size, seed=size)
            fill_s = await _fill(knowledge, base.base.id, vectors, texts)
            probe, _ = _corpus(queries, seed=size + 1, centres_seed=size)
            chooser = random.Random(size)
            timings: dict[str, list[float]] = {"vector": [], "exact": [], "text": [], "hybrid": []}
            recalls = []
            for index in range(queries):
                vector = probe[index].tolist()
                words = " ".join(chooser.choices(WORDS, k=4))
                found: dict[str, list[str]] = {}
                for mode, exact in (("vector", False), ("exact", True), ("text", False), ("hybrid", False)):
                    query = SearchQuery(
                        [base.base.id],
                        "bench",
                        "vector" if mode == "exact" else mode,
                        vector=vector,
                        text=words,
                        top_k=10,
                        exact=exact,
                    )
                    started = time.perf_counter()
                    hits = await knowledge.search(PROJECT, query)
                    timings[mode].append((time.perf_counter() - started) * 1000)
                    found[mode] = [f"{h.document_id}:{h.position}" for h in hits]
                exact_ids = set(found["exact"])
                recalls.append(len(exact_ids & set(found["vector"])) / max(len(exact_ids), 1))
            rows.append(
                {
                    "chunks": size,
                    "fill_chunks_per_s": size / fill_s,
                    **{f"{mode}_p50": statistics.median(values) for mode, values in timings.items()},
                    **{f"{mode}_p99": percentile(values, 0.99) for mode, values in timings.items()},
                    "recall_at_10": statistics.mean(recalls),
                }
            )
        finally:
            await engine.dispose()
    return rows


async def _embedder() -> tuple[SentenceEncoderBackend, float]:
    backend = SentenceEncoderBackend(DEFAULT_EMBEDDING_MODEL, SentenceEncoderConfig(), InferenceSettings())
    started = time.perf_counter()
    await backend.load()
    return backend, time.perf_counter() - started


async def _ingestion(url: str, backend: SentenceEncoderBackend, documents: int) -> dict[str, float]:
    """Chunks/s of the whole ingestion path in-process: chunk, embed (16 at a time), write, show."""
    database = await _fresh(url, "bench_kb_ingest")
    engine = create_engine(database)
    try:
        await upgrade_to_head(engine)
        knowledge = Knowledge(engine)
        base = await knowledge.create_knowledge_base(
            PROJECT, "ingest", "", {}, DEFAULT_EMBEDDING_MODEL, 0, None
        )
        passages = list(json.loads(EVAL_SET.read_text())["passages"].values())
        chooser = random.Random(7)
        chunks_done, embed_s = 0, 0.0
        started = time.perf_counter()
        for index in range(documents):
            text = f"Document {index}.\n\n" + "\n\n".join(chooser.choices(passages, k=40))
            document, _ = await knowledge.add_document(
                PROJECT, base.base.id, f"d{index}", "text/plain", text, {}, None
            )
            chunks = chunk_text(text, 1000, 200)
            for first in range(0, len(chunks), 16):
                batch = chunks[first : first + 16]
                embed_started = time.perf_counter()
                embedded = await backend.embed([c.text for c in batch])
                embed_s += time.perf_counter() - embed_started
                await knowledge.put_chunks(
                    PROJECT,
                    document.id,
                    1,
                    [
                        NewChunk(first + i, c.text, c.start, c.end, vector)
                        for i, (c, vector) in enumerate(zip(batch, embedded.vectors, strict=True))
                    ],
                    len(chunks),
                )
            await knowledge.finish_document(PROJECT, document.id, 1, len(chunks))
            chunks_done += len(chunks)
        total_s = time.perf_counter() - started
        return {
            "chunks": chunks_done,
            "chunks_per_s": chunks_done / total_s,
            "embed_ms_per_chunk": embed_s / chunks_done * 1000,
        }
    finally:
        await engine.dispose()


async def _quality(url: str, backend: SentenceEncoderBackend) -> dict[str, dict[str, float]]:
    """recall@5 and MRR of vector, text and hybrid search over the labelled set (English and Japanese)."""
    labelled = json.loads(EVAL_SET.read_text())
    database = await _fresh(url, "bench_kb_quality")
    engine = create_engine(database)
    try:
        await upgrade_to_head(engine)
        knowledge = Knowledge(engine)
        base = await knowledge.create_knowledge_base(
            PROJECT, "eval", "", {}, DEFAULT_EMBEDDING_MODEL, 0, None
        )
        for key, text in labelled["passages"].items():
            document, _ = await knowledge.add_document(
                PROJECT, base.base.id, key, "text/plain", text, {}, None
            )
            (vector,) = (await backend.embed([text])).vectors
            await knowledge.put_chunks(PROJECT, document.id, 1, [NewChunk(0, text, 0, len(text), vector)], 1)
            await knowledge.finish_document(PROJECT, document.id, 1, 1)
        scores: dict[str, dict[str, list[float]]] = {}
        for item in labelled["queries"]:
            language = "ja" if item["relevant"].startswith("j") else "en"
            (vector,) = (await backend.embed([item["query"]])).vectors
            for mode in ("vector", "text", "hybrid"):
                hits = await knowledge.search(
                    PROJECT,
                    SearchQuery(
                        [base.base.id],
                        DEFAULT_EMBEDDING_MODEL,
                        mode,
                        vector=vector,
                        text=item["query"],
                        top_k=10,
                    ),
                )
                titles = [h.title for h in hits]
                rank = titles.index(item["relevant"]) + 1 if item["relevant"] in titles else 0
                bucket = scores.setdefault(f"{language}/{mode}", {"recall5": [], "mrr": []})
                bucket["recall5"].append(1.0 if 0 < rank <= 5 else 0.0)
                bucket["mrr"].append(1.0 / rank if rank else 0.0)
        return {
            key: {
                "recall_at_5": statistics.mean(v["recall5"]),
                "mrr": statistics.mean(v["mrr"]),
                "n": len(v["mrr"]),
            }
            for key, v in scores.items()
        }
    finally:
        await engine.dispose()


async def _measure(quick: bool) -> Part:
    sizes = [2_000, 10_000] if quick else [10_000, 100_000]
    queries = 20 if quick else 100
    server, data, pg_url = _pgserver()
    folder = Path(tempfile.mkdtemp(prefix="llmmesh-bench-sqlite-"))
    try:
        backend, load_s = await _embedder()
        sample = ["word " * 180] * 16
        await backend.embed(sample)
        started = time.perf_counter()
        await backend.embed(sample)
        ms_per_chunk = (time.perf_counter() - started) / len(sample) * 1000
        databases = {"SQLite": f"sqlite+aiosqlite:///{folder}/{{}}.db", "PostgreSQL + pgvector": pg_url}
        search: dict[str, list[dict[str, Any]]] = {}
        ingestion: dict[str, dict[str, float]] = {}
        for name, url in databases.items():
            ingestion[name] = await _ingestion(
                url.format("ingest") if "{}" in url else url, backend, 2 if quick else 8
            )
            rows = []
            for size in sizes:
                rows += await _search_figures(
                    url.format(f"search{size}") if "{}" in url else url, [size], queries
                )
            search[name] = rows
        quality = await _quality(databases["SQLite"].format("quality"), backend)
        await backend.close()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    model_zip = packaged_model_path()
    lines = [
        "# Knowledge bases",
        "",
        f"Machine: {machine()}.",
        "",
        f"Command: `python -m bench.knowledge{' --quick' if quick else ''}`. In-process store (no gRPC); "
        "PostgreSQL 16 + pgvector 0.6 from the pgserver wheel, default settings (HNSW m=16, "
        "ef_construction=64; ef_search raised to max(40, 4 x the candidates a search wants)).",
        "",
        "## Default embedder: all-MiniLM-L6-v2 (numpy, CPU)",
        "",
        f"- on disk: {model_zip.stat().st_size / 2**20:.0f} MiB (the package's model.zip: float32 safetensors "
        "and tokenizer.json); in memory about 90 MiB of float32 weights",
        f"- load: {load_s:.2f} s; 384 dimensions; inputs cut at 256 tokens",
        f"- {ms_per_chunk:.0f} ms per chunk of 180 tokens (batches of 16, numpy's BLAS on this machine's cores)",
        "",
        "## Ingestion (chunk → embed → write → show), chunks of 1000 characters",
        "",
        "| database | chunks | chunks/s | of which embedding, ms/chunk |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in ingestion.items():
        lines.append(
            f"| {name} | {figures['chunks']:.0f} | {figures['chunks_per_s']:.1f} | {figures['embed_ms_per_chunk']:.0f} |"
        )
    lines += [
        "",
        f"## Search latency, top 10, {queries} queries (ms)",
        "",
        "| database | chunks | written chunks/s | vector (index) p50 / p99 | vector exact p50 / p99 | text p50 / p99 "
        "| hybrid p50 / p99 | recall@10 index vs exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in search.items():
        for row in rows:
            lines.append(
                f"| {name} | {row['chunks']} | {row['fill_chunks_per_s']:.0f} | "
                f"{row['vector_p50']:.1f} / {row['vector_p99']:.1f} | {row['exact_p50']:.1f} / {row['exact_p99']:.1f} | "
                f"{row['text_p50']:.1f} / {row['text_p99']:.1f} | {row['hybrid_p50']:.1f} / {row['hybrid_p99']:.1f} | "
                f"{row['recall_at_10']:.3f} |"
            )
    lines += [
        "",
        "SQLite has no approximate index: its vector search is exact (numpy over the knowledge base's vectors, "
        "kept in memory between searches), so its recall is 1 by construction.",
        "",
        f"## Retrieval quality of the default embedder ({EVAL_SET.name})",
        "",
        "| queries | mode | recall@5 | MRR |",
        "|---|---|---:|---:|",
    ]
    for key in sorted(quality):
        language, mode = key.split("/")
        figures = quality[key]
        lines.append(
            f"| {language} ({figures['n']:.0f}) | {mode} | {figures['recall_at_5']:.2f} | {figures['mrr']:.2f} |"
        )
    lines += [
        "",
        "The set: 30 short passages (24 English, 6 Japanese) and one query per passage worded differently from it, "
        "written for this repo. all-MiniLM-L6-v2 was trained on English; for Japanese the full-text side "
        "(character bigrams) carries hybrid search. How hybrid search fuses the two rankings, and what the "
        "fusions tried before it scored: [knowledge-notes.md](knowledge-notes.md).",
    ]
    figures = {
        "embed_ms_per_chunk": ms_per_chunk,
        **{f"ingest_chunks_per_s_{i}": f["chunks_per_s"] for i, f in enumerate(ingestion.values())},
    }
    return Part("knowledge", lines, figures)


def measure(quick: bool = False) -> Part:
    return asyncio.run(_measure(quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k chunks, 20 queries: a smoke run")
    add_output_options(parser)
    args = parser.parse_args()
    part = measure(args.quick)
    write_report(output_dir(args) / f"{part.name}.md", part.lines)


if __name__ == "__main__":
    main()

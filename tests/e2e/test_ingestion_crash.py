"""Crash safety of ingestion: the orchestrator indexing a document is killed with SIGKILL mid-way;
started again, it takes the job back, continues after the last chunk written, and the document ends
indexed with every chunk exactly once. Real processes (store on SQLite, scripted slow embedder)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
from llmmesh.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from llmmesh.store.v1 import store_pb2, store_pb2_grpc

from tests.support.processes import mesh_env, tail, wait_serving

# 160 chunks of about 100 characters: ten embedding calls of 16, 0.25 s each.
TEXT = " ".join(f"Sentence number {i} of the long document, written to be chunked." for i in range(240))


def test_an_ingestion_killed_mid_way_resumes_and_indexes_each_chunk_once(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "models:\n"
        "  local:\n    backend: tests.support.fakes:ScriptedBackend\n"
        "  slow-embed:\n    backend: tests.support.fakes:SlowEmbedder\n    task: embed\n"
    )
    env = mesh_env(tmp_path, f"sqlite+aiosqlite:///{database}")
    env.update(
        LLM_MESH_REGISTRY=str(registry),
        ORCHESTRATOR_JOB_LEASE_S="1.5",
        ORCHESTRATOR_JOB_HEARTBEAT_S="0.3",
        ORCHESTRATOR_JOB_POLL_S="0.2",
    )
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, service: str) -> None:
        log = (tmp_path / f"{name}.log").open("ab")
        processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", service], env=env, stdout=log, stderr=log
        )
        wait_serving(f"127.0.0.1:{env[f'{service.upper()}_PORT']}", processes[name], tmp_path)

    def written(document_id: str) -> tuple[int, int, str]:
        with sqlite3.connect(database) as db:
            row = db.execute(
                "SELECT chunks_written, chunk_count, status FROM kb_documents WHERE id = ?", (document_id,)
            ).fetchone()
        return int(row[0]), int(row[1]), str(row[2])

    try:
        start("store", "store")
        start("inference", "inference")
        start("orchestrator", "orchestrator")
        with (
            grpc.insecure_channel(env["ORCHESTRATOR_ADDR"]) as orchestrator_channel,
            grpc.insecure_channel(env["STORE_ADDR"]) as store_channel,
        ):
            orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(orchestrator_channel)
            base_id = orchestrator.CreateKnowledgeBase(
                orchestrator_pb2.CreateKnowledgeBaseRequest(
                    name="long", embedding_model="slow-embed", chunk_size=100
                ),
                timeout=10,
            ).knowledge_base_id
            added = orchestrator.AddKnowledgeDocument(
                orchestrator_pb2.AddKnowledgeDocumentRequest(knowledge_base_id=base_id, text=TEXT), timeout=10
            )
            deadline = time.monotonic() + 30
            while written(added.document_id)[0] < 32 and time.monotonic() < deadline:
                time.sleep(0.05)
            processes["orchestrator"].send_signal(signal.SIGKILL)
            processes["orchestrator"].wait(timeout=10)
            before, total, status = written(added.document_id)
            assert 0 < before < total and status == "in_progress", "killed mid-way"
            start("orchestrator", "orchestrator")
            deadline = time.monotonic() + 60
            while written(added.document_id)[2] != "completed" and time.monotonic() < deadline:
                time.sleep(0.2)
            store = store_pb2_grpc.StoreServiceStub(store_channel)
            job = store.GetJob(store_pb2.GetJobRequest(job_id=added.job_id), timeout=10).job
        after, total, status = written(added.document_id)
        assert status == "completed", tail(tmp_path)
        with sqlite3.connect(database) as db:
            positions = [p for (p,) in db.execute("SELECT position FROM kb_chunks ORDER BY position")]
            searchable = db.execute(
                "SELECT count(*) FROM kb_chunks c JOIN kb_documents d ON d.pk = c.document_pk "
                "WHERE d.indexed_generation >= c.generation"
            ).fetchone()[0]
        assert positions == list(range(total)) and searchable == total == after, "each chunk once"
        assert job.attempts == 2
        result = json.loads(job.result_json)
        assert result["chunks"] == total and result["written"] <= total - before, "resumed, not redone"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {name: process.wait(timeout=60) for name, process in processes.items()}
    assert codes == {"store": 0, "inference": 0, "orchestrator": 0}, tail(tmp_path)

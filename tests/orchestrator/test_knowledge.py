"""The orchestrator's pure knowledge base logic: reading documents, chunking, the prompt's sources."""

from __future__ import annotations

import itertools

import pytest
from llmmesh.common.v1 import common_pb2
from llmmesh.orchestrator.v1 import orchestrator_pb2

from services.common.errors import UnsupportedFileType
from services.orchestrator.knowledge import (
    UnreadableFile,
    chunk_text,
    document_type,
    extract_text,
    fuse,
    with_sources,
)
from tests.support.pdf import pdf_with_text


def test_chunks_cover_the_text_end_at_breaks_and_overlap() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 30 for i in range(8))
    chunks = chunk_text(text, size=300, overlap=60)
    assert len(chunks) > 1
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks), "offsets point into the text"
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "neighbours overlap"
    assert chunk_text(text, 300, 60) == chunks, "deterministic: a resumed job relies on it"


def test_japanese_text_is_cut_after_its_sentence_marks() -> None:
    text = "これは最初の文です。" * 40
    chunks = chunk_text(text, size=100, overlap=0)
    assert all(c.text.endswith("。") for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == text


def test_documents_are_read_by_type() -> None:
    assert document_type("notes.MD", "application/octet-stream") == "text/markdown"
    assert document_type("upload", "text/html; charset=utf-8") == "text/html"
    with pytest.raises(UnsupportedFileType):
        document_type("photo.png", "image/png")
    page = b"<html><head><title>t</title><style>p{}</style></head><body><h1>Title</h1><p>One &amp; two</p><script>x()</script></body></html>"
    assert extract_text(page, "text/html") == "Title\n\nOne & two"
    assert extract_text("\ufeffplain".encode(), "text/plain") == "plain"
    pdf = pdf_with_text("Warranty terms", "Repairs are free for two years (parts and labour).")
    assert document_type("terms.pdf", "application/octet-stream") == "application/pdf"
    assert extract_text(pdf, "application/pdf").split("\n")[:2] == [
        "Warranty terms",
        "Repairs are free for two years (parts and labour).",
    ]
    with pytest.raises(UnreadableFile):
        extract_text(b"%PDF-1.4 not really", "application/pdf")


def test_the_prompt_gets_numbered_sources_after_the_callers_instruction() -> None:
    hits = [
        common_pb2.KnowledgeHit(title="a.md", text="alpha"),
        common_pb2.KnowledgeHit(title="b.md", text="beta"),
    ]
    spec = orchestrator_pb2.GenerationSpec(system="Be brief.", prompt="q")
    spec.knowledge.knowledge_base_ids.append("vs_1")
    grounded = with_sources(spec, hits)
    assert grounded.system.startswith("Be brief.\n\nAnswer from the numbered sources")
    assert "[1] a.md\nalpha" in grounded.system and "[2] b.md\nbeta" in grounded.system
    assert not grounded.HasField("knowledge") and spec.HasField("knowledge")


def test_hits_of_knowledge_bases_of_two_models_are_fused_by_rank() -> None:
    first = [common_pb2.KnowledgeHit(text="a1"), common_pb2.KnowledgeHit(text="a2")]
    second = [common_pb2.KnowledgeHit(text="b1")]
    assert [h.text for h in fuse([first, second], 3)] == ["a1", "b1", "a2"]

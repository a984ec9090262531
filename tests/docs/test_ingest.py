"""owl.docs.ingest with the real embedded embedding model: planted facts found, incremental
re-ingestion, removals, skips with reasons, and an ingestion killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from owl.docs.ask import retrieve
from owl.docs.index import Index
from owl.docs.ingest import IngestProgress, add_documents
from tests.support.documents import (
    HERON_FACT,
    HERON_QUESTION,
    ORCHARD_QUESTION,
    PDF_FACT,
    PDF_QUESTION,
    write_corpus,
)

pytestmark = pytest.mark.slow


def _index(tmp_path: Path, embedder) -> Index:
    return Index.create(
        tmp_path / "notes.sqlite", embedder="minilm@test", dimensions=embedder.dimensions
    )


def test_planted_facts_are_found_with_their_page_and_span(tmp_path: Path, minilm_embedder) -> None:
    planted = write_corpus(tmp_path / "corpus")
    seen: list[IngestProgress] = []
    with _index(tmp_path, minilm_embedder) as index:
        report = add_documents(
            index,
            [tmp_path / "corpus"],
            collection="notes",
            embedder=minilm_embedder,
            progress=seen.append,
        )
        assert len(report.files_read) == 6 and not report.files_skipped
        assert report.chunks >= 6
        assert seen[-1].files_done == seen[-1].files_total == 6
        heron = retrieve(index, HERON_QUESTION, embedder=minilm_embedder, k=3)
        assert heron.hits[0].path == str(planted["heron"].resolve())
        assert HERON_FACT in heron.hits[0].text
        top = heron.hits[0]
        assert planted["heron"].read_text(encoding="utf-8")[top.start : top.end] == top.text
        orchard = retrieve(index, ORCHARD_QUESTION, embedder=minilm_embedder, k=3)
        assert orchard.hits[0].path.endswith("orchard.html")
        assert "quince script" not in " ".join(hit.text for hit in orchard.hits)  # no <script>
        ledger = retrieve(index, PDF_QUESTION, embedder=minilm_embedder, k=3)
        assert ledger.hits[0].path.endswith("ledger.pdf")
        assert ledger.hits[0].page == 2 and PDF_FACT in ledger.hits[0].text


def test_only_changed_files_are_read_again_and_removed_ones_leave(
    tmp_path: Path, minilm_embedder
) -> None:
    planted = write_corpus(tmp_path / "corpus")
    corpus = tmp_path / "corpus"
    with _index(tmp_path, minilm_embedder) as index:
        add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        again = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        assert again.files_read == [] and len(again.files_unchanged) == 6

        os.utime(planted["heron"], (1, 1))  # a touch alone: the same bytes, not read again
        touched = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        assert touched.files_read == []

        weather = (corpus / "weather.md").resolve()
        weather.write_text("# Weather notes\n\nHail fell on the ninth of June.\n", encoding="utf-8")
        changed = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        assert changed.files_read == [str(weather)]
        assert len(changed.files_unchanged) == 5

        planted["heron"].unlink()
        removed = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        assert removed.files_removed == [str(planted["heron"].resolve())]
        assert str(planted["heron"].resolve()) not in index.files()
        found = retrieve(index, HERON_QUESTION, embedder=minilm_embedder, k=5)
        assert all("heron" not in hit.path for hit in found.hits)


def test_untrusted_files_are_skipped_with_reasons(tmp_path: Path, minilm_embedder) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    (corpus / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    outside = tmp_path / "secret.md"
    outside.write_text("# Secret\n\nThe vault opens at midnight.\n", encoding="utf-8")
    (corpus / "link.md").symlink_to(outside)
    with open(corpus / "huge.txt", "wb") as handle:
        handle.truncate(1 << 30)  # a 1 GB file, sparse: refused by its size, never read
    with _index(tmp_path, minilm_embedder) as index:
        report = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        reasons = {Path(s.path).name: s.reason for s in report.files_skipped}
        assert set(reasons) == {"photo.txt", "link.md", "huge.txt"}, reasons
        assert all(reason for reason in reasons.values())
        assert len(report.files_read) == 6
        assert not any("secret" in path for path in index.files())


_KILLED_CHILD = r"""
import sys
from pathlib import Path
from owl import engine
from owl.config import Settings
from owl.docs.index import Index
from owl.docs.ingest import add_documents
from owl.pull import open_store, pull

home, corpus, index_path = (Path(arg) for arg in sys.argv[1:4])
settings = Settings(home=home)
store = open_store(settings)
embedder = engine.load(pull("minilm", store=store, settings=settings), store=store,
                       settings=settings, capability=engine.Capability.EMBED)
index = Index.open(index_path)

def progress(at):
    # Once two batches are written, tell the parent and wait to be killed mid-ingestion.
    if at.files_done == 90:
        print("committed", flush=True)
        sys.stdin.read()

add_documents(index, [corpus], collection="notes", embedder=embedder, progress=progress)
"""


def test_a_killed_ingestion_leaves_the_index_usable(tmp_path: Path, minilm_embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number in range(120):  # one chunk each: batches of 64 are committed as they fill
        (corpus / f"note-{number:03}.md").write_text(
            f"# Note {number}\n\nNote number {number} is about item {number * 7}.\n",
            encoding="utf-8",
        )
    path = tmp_path / "notes.sqlite"
    Index.create(path, embedder="minilm@test", dimensions=minilm_embedder.dimensions).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(tmp_path / "home"), str(corpus), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "committed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    with Index.open(path) as index:
        files = index.files()
        assert 64 <= len(files) < 120  # the first batch at least, never the whole folder
        assert all(record.chunks == 1 for record in files.values())
        assert index.stats()["chunks"] == len(files)
        rest = add_documents(index, [corpus], collection="notes", embedder=minilm_embedder)
        assert len(rest.files_read) == 120 - len(files)
        assert len(rest.files_unchanged) == len(files)
        assert index.stats()["files"] == 120

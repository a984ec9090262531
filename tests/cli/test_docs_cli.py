"""owl docs add|list|show|search|rm and owl ask as a user runs them: one collection built once
in the module's OWL_HOME, JSON that other programs read, refusals as one line with exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import owl
from tests.support.documents import HERON_QUESTION, write_corpus

pytestmark = pytest.mark.slow  # docs add, search and ask load the embedding model in their process


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("docs-cli")
    write_corpus(root / "corpus")
    result = owl(root / "owl-home", "docs", "add", "notes", str(root / "corpus"), "--json")
    assert result.returncode == 0, result.stderr
    return root / "owl-home", root / "corpus", json.loads(result.stdout)


def test_add_reports_what_it_read_and_again_reads_nothing(built) -> None:
    home, corpus, report = built
    assert len(report["files_read"]) == 6 and report["files_skipped"] == []
    assert report["chunks"] >= 6 and report["total_files"] == 6
    again = owl(home, "docs", "add", "notes", "--json")  # no paths: the collection's own folder
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["files_read"] == []
    assert len(json.loads(again.stdout)["files_unchanged"]) == 6


def test_search_json_has_the_issues_fields(built) -> None:
    home, _, _ = built
    result = owl(home, "docs", "search", "notes", HERON_QUESTION, "--k", "3", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3
    assert set(hits[0]) == {"path", "page", "start", "end", "score", "text"}
    assert hits[0]["path"].endswith("heron.md") and "7-4-1-9" in hits[0]["text"]
    reranked = owl(
        home, "docs", "search", "notes", HERON_QUESTION, "--k", "2", "--rerank", "smollm2", "--json"
    )
    assert reranked.returncode == 0, reranked.stderr
    hits = json.loads(reranked.stdout)["hits"]
    assert hits[0]["path"].endswith("heron.md") and all(0 < h["score"] <= 1 for h in hits)


def test_ask_answers_with_sources(built) -> None:
    home, _, _ = built
    result = owl(home, "ask", "notes", HERON_QUESTION, "--k", "3", "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] and answer["answer"]
    assert answer["sources"][0]["path"].endswith("heron.md")
    assert all(1 <= c["n"] <= len(answer["sources"]) for c in answer["citations"])
    plain = owl(home, "ask", "notes", HERON_QUESTION, "--k", "2", timeout=300)
    assert plain.returncode == 0, plain.stderr
    assert "heron.md" in plain.stdout  # the sources (cited or retrieved) are listed


def test_list_show_and_rm(built, tmp_path: Path) -> None:
    home, corpus, _ = built
    listed = json.loads(owl(home, "docs", "list", "--json").stdout)["collections"]
    assert [c["name"] for c in listed] == ["notes"] and listed[0]["files"] == 6
    shown = json.loads(owl(home, "docs", "show", "notes", "--json").stdout)
    assert shown["roots"] == [str(corpus.resolve())]
    assert shown["embedder"].startswith("minilm@sha256:")
    assert len(shown["files_indexed"]) == 6
    # rm on a copy of the home, so that the other tests keep their collection
    missing = owl(home, "docs", "show", "nope")
    assert missing.returncode == 1 and "owl docs add nope" in missing.stderr
    bad = owl(home, "docs", "add", "Bad/Name", str(corpus))
    assert bad.returncode == 1 and "not a collection name" in bad.stderr


def test_rm_deletes_the_index_only(tmp_path: Path) -> None:
    home = tmp_path / "owl-home"
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    assert owl(home, "docs", "add", "tmp", str(corpus / "trains.txt")).returncode == 0
    removed = owl(home, "docs", "rm", "tmp")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(owl(home, "docs", "list", "--json").stdout)["collections"] == []
    assert (corpus / "trains.txt").is_file()

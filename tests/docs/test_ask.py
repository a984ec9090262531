"""owl.docs.ask with the real bundled chat model and embedding model: an answer with sources
that point at the planted fact, the not-found answer, and an injection kept as data."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from owl.docs.ask import ask, retrieve
from owl.docs.grounding import NOT_FOUND
from owl.docs.index import Index
from owl.docs.ingest import add_documents
from owl.docs.rerank import load_reranker, query_likelihoods
from owl.pull import pull
from tests.support.documents import (
    HERON_QUESTION,
    INJECTION,
    UNRELATED_QUESTION,
    write_corpus,
)
from tests.support.tiny_cross_encoder import build_tiny_cross_encoder, reference_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory, minilm_embedder):
    folder = tmp_path_factory.mktemp("ask")
    write_corpus(folder / "corpus")
    (folder / "corpus" / "memo.md").write_text(
        f"# Memo on the beacon\n\nThe beacon's lamp is cleaned weekly.\n\n{INJECTION}\n",
        encoding="utf-8",
    )
    index = Index.create(
        folder / "notes.sqlite", embedder="minilm@test", dimensions=minilm_embedder.dimensions
    )
    add_documents(index, [folder / "corpus"], collection="notes", embedder=minilm_embedder)
    yield index
    index.close()


def test_an_answer_cites_only_the_sources_it_was_given(
    notes, minilm_embedder, shared_model
) -> None:
    answer = ask(notes, HERON_QUESTION, embedder=minilm_embedder, model=shared_model, k=3)
    assert answer.found
    assert answer.sources[0].path.endswith("heron.md")
    assert "7-4-1-9" in answer.sources[0].text
    assert answer.text and answer.text != NOT_FOUND
    assert all(1 <= n <= len(answer.sources) for n in answer.citations)
    shown = answer.to_json()
    assert [c["n"] for c in shown["citations"]] == answer.citations
    assert shown["sources"][0]["path"].endswith("heron.md")


def test_a_question_the_documents_do_not_answer_is_not_found(
    notes, minilm_embedder, shared_model
) -> None:
    retrieved = retrieve(notes, UNRELATED_QUESTION, embedder=minilm_embedder, k=5)
    assert not retrieved.relevant(), retrieved.best_similarity
    answer = ask(notes, UNRELATED_QUESTION, embedder=minilm_embedder, model=shared_model)
    assert answer.text == NOT_FOUND and not answer.found and answer.sources == []


def test_an_injected_document_reaches_the_model_as_a_quoted_source(
    notes, minilm_embedder, shared_model
) -> None:
    answer = ask(
        notes,
        "How often is the beacon's lamp cleaned?",
        embedder=minilm_embedder,
        model=shared_model,
        k=3,
    )
    memo = [hit for hit in answer.sources if hit.path.endswith("memo.md")]
    assert memo and "PWNED" in memo[0].text  # retrieved, and given to the model as a source
    assert all(1 <= n <= len(answer.sources) for n in answer.citations)


def test_reranking_by_query_likelihood_keeps_the_planted_fact_first(
    notes, minilm_embedder, shared_model
) -> None:
    rerank = partial(query_likelihoods, shared_model)
    plain = retrieve(notes, HERON_QUESTION, embedder=minilm_embedder, k=3)
    reranked = retrieve(notes, HERON_QUESTION, embedder=minilm_embedder, k=3, rerank=rerank)
    assert len(reranked.hits) == 3
    assert reranked.hits[0].path.endswith("heron.md")
    scores = [hit.score for hit in reranked.hits]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert scores != [hit.score for hit in plain.hits]  # the reranker's scores, not RRF's
    # The same passages scored directly give the same numbers: rerank is query_likelihoods.
    direct = rerank(HERON_QUESTION, [hit.text for hit in reranked.hits])
    assert direct == pytest.approx(scores, rel=1e-6)


def test_a_cross_encoder_reranks_with_its_own_scores(
    notes, minilm_embedder, tmp_path: Path, settings, store
) -> None:
    """owl docs search --rerank with a stored cross-encoder: the candidates come back in the
    order of sentence-transformers' CrossEncoder scores for them, with those scores."""
    folder = build_tiny_cross_encoder(tmp_path / "tiny-ce")
    pull(str(folder), store=store, settings=settings, name="tiny-ce")
    loaded, rerank = load_reranker("tiny-ce", store=store, settings=settings)
    try:
        found = retrieve(notes, HERON_QUESTION, embedder=minilm_embedder, k=3, rerank=rerank)
    finally:
        loaded.close()
    texts = [hit.text for hit in found.hits]
    expected = reference_scores(folder, HERON_QUESTION, texts)
    assert [hit.score for hit in found.hits] == pytest.approx(expected, abs=1e-5)
    assert expected == sorted(expected, reverse=True)

"""`owl ask`: retrieve from a collection, answer with the chat model, cite the sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from owl.docs.grounding import NOT_FOUND, Cited, check_citations, grounded_messages, location
from owl.docs.index import Index
from owl.docs.ingest import TextEmbedder
from owl.docs.rerank import Rerank
from owl.docs.retrieve import DEPTH, search
from owl.docs.types import Hit
from owl.engine import Model, SamplingParams

# Below this cosine similarity between the question and its nearest chunk, nothing in the
# collection is taken to be about the question (all-MiniLM-L6-v2 puts unrelated English
# sentences near 0.0–0.2 and paraphrases above 0.5).
MIN_SIMILARITY = 0.3


@dataclass(frozen=True)
class Retrieved:
    """The chunks found for a query, best first, and how close the nearest one is."""

    hits: list[Hit]
    best_similarity: float

    def relevant(self, min_similarity: float = MIN_SIMILARITY) -> bool:
        return bool(self.hits) and self.best_similarity >= min_similarity


# Candidates a reranker sees for each chunk it returns: enough for it to lift a chunk that
# both first-stage rankings placed low, few enough to stay interactive on a CPU.
RERANK_POOL = 4


def retrieve(
    index: Index,
    query: str,
    *,
    embedder: TextEmbedder,
    k: int = 5,
    mode: str = "hybrid",
    rerank: Rerank | None = None,
) -> Retrieved:
    """The top `k` chunks for `query` (bm25 | vector | hybrid), with the best vector score;
    with `rerank`, the top RERANK_POOL × k reordered by it (their scores become its)."""
    vector = embedder.embed([query], normalize=True, truncate=True).vectors[0]
    wanted = min(k * RERANK_POOL, DEPTH) if rerank is not None else k
    # The vector ranking once: the search's (vector, hybrid) and the best similarity's.
    nearest = index.nearest(vector, 1 if mode == "bm25" else max(DEPTH, wanted))
    hits = search(index, query, query_vector=vector, k=wanted, mode=mode, nearest=nearest)
    if rerank is not None and hits:
        scores = rerank(query, [hit.text for hit in hits])
        ranked = sorted(zip(scores, range(len(hits)), strict=True), reverse=True)
        hits = [replace(hits[i], score=float(score)) for score, i in ranked[:k]]
    return Retrieved(hits, nearest[0].score if nearest else 0.0)


def hit_json(hit: Hit) -> dict[str, Any]:
    return {
        "path": hit.path,
        "page": hit.page,
        "start": hit.start,
        "end": hit.end,
        "score": hit.score,
        "text": hit.text,
    }


@dataclass(frozen=True)
class Answer:
    """An answer, the sources it was given (numbered from 1) and the ones it cites."""

    text: str
    found: bool
    sources: list[Hit] = field(default_factory=list)
    citations: list[int] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "found": self.found,
            "citations": [
                {"n": n, "location": location(self.sources[n - 1]), **hit_json(self.sources[n - 1])}
                for n in self.citations
            ],
            "sources": [hit_json(hit) for hit in self.sources],
            "invalid_citations": self.invalid_citations,
        }


def answer_from(text: str, sources: Sequence[Hit]) -> Answer:
    """A generated answer checked against its sources."""
    cited: Cited = check_citations(text, len(sources))
    return Answer(cited.text, True, list(sources), cited.citations, cited.invalid)


def ask(
    index: Index,
    question: str,
    *,
    embedder: TextEmbedder,
    model: Model,
    k: int = 5,
    params: SamplingParams | None = None,
    min_similarity: float = MIN_SIMILARITY,
    rerank: Rerank | None = None,
) -> Answer:
    """Answer `question` from `index`'s documents with `model`, citing what it used; the
    not-found answer, without asking the model, when nothing retrieved is about it."""
    retrieved = retrieve(index, question, embedder=embedder, k=k, rerank=rerank)
    if not retrieved.relevant(min_similarity):
        return Answer(NOT_FOUND, False)
    messages = grounded_messages([{"role": "user", "content": question}], retrieved.hits)
    params = params or model.sampling(temperature=0.0, max_tokens=256)
    text = "".join(delta.text for delta in model.chat(messages, params))
    return answer_from(text, retrieved.hits)

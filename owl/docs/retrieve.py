"""Retrieval over a collection's index: BM25, vectors, or both fused by reciprocal rank.

Reciprocal-rank fusion (Cormack et al., 2009) needs no calibration between BM25 scores and
cosine similarities, which live on unrelated scales: only each list's order counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from owl.docs.index import Index
from owl.docs.types import Hit
from owl.errors import DocumentError

MODES = ("bm25", "vector", "hybrid")
DEPTH = 50  # candidates each ranking gives the fusion


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hit]], *, k: int = 60) -> list[Hit]:
    """Fuse ranked lists into one: a chunk scores Σ 1/(k + rank) over the lists it is in
    (rank from 1), best first; ties keep the order in which the chunks were first seen.

    A chunk listed twice in one ranking counts once, at its better rank, and the chunks
    after it move up one."""
    if k < 0:
        raise DocumentError(f"the fusion constant k must be 0 or more, not {k}")
    scores: dict[int, float] = {}
    first: dict[int, Hit] = {}
    for ranking in rankings:
        ranked = list(dict.fromkeys(hit.chunk_id for hit in ranking))  # repeats dropped
        for hit in ranking:
            first.setdefault(hit.chunk_id, hit)
        for rank, chunk_id in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    order = {chunk_id: position for position, chunk_id in enumerate(first)}
    best = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], order[chunk_id]))
    return [replace(first[chunk_id], score=scores[chunk_id]) for chunk_id in best]


def search(
    index: Index,
    query: str,
    *,
    query_vector: Sequence[float] | None,
    k: int = 5,
    mode: str = "hybrid",
    depth: int = DEPTH,
    nearest: Sequence[Hit] | None = None,
) -> list[Hit]:
    """The `k` chunks of `index` that best answer `query`.

    mode "bm25" ranks by the query's words, "vector" by `query_vector` (the query embedded by
    the collection's embedder), "hybrid" fuses the top `depth` of each by reciprocal rank.
    `nearest`: the vector ranking for `query_vector` (at least `depth` long, or the whole
    index) when the caller has it already, so that it is not searched for twice."""
    if mode not in MODES:
        raise DocumentError(f"unknown retrieval mode '{mode}'; use one of {', '.join(MODES)}")
    if k < 1:
        raise DocumentError(f"ask for at least one passage, not k={k}")
    if mode != "bm25" and query_vector is None:
        raise DocumentError(f"retrieval mode '{mode}' needs the query's vector; or use bm25")
    if mode == "bm25":
        return index.bm25(query, k)
    depth = max(depth, k)
    if nearest is None:
        nearest = index.nearest(query_vector, k if mode == "vector" else depth)
    if mode == "vector":
        return list(nearest[:k])
    fused = reciprocal_rank_fusion([index.bm25(query, depth), nearest[:depth]])
    return fused[:k]

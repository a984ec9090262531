"""Retrieval: reciprocal-rank fusion, and the three search modes over a real index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from owl.docs.index import Index
from owl.docs.retrieve import reciprocal_rank_fusion, search
from owl.docs.types import Chunk, Hit
from owl.errors import DocumentError

DIM = 8


def hit(chunk_id: int, score: float = 0.0) -> Hit:
    return Hit(
        path=f"{chunk_id}.txt", page=None, start=0, end=1, score=score, text="x", chunk_id=chunk_id
    )


def ids(hits: list[Hit]) -> list[int]:
    return [h.chunk_id for h in hits]


def test_a_chunk_ranked_well_in_both_lists_beats_one_first_in_only_one() -> None:
    fused = reciprocal_rank_fusion([[hit(1), hit(2), hit(3)], [hit(4), hit(2), hit(5)]])
    assert ids(fused)[0] == 2
    assert set(ids(fused)) == {1, 2, 3, 4, 5}


def test_fused_scores_are_the_sum_of_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([[hit(1, 9.0), hit(2, 8.0)], [hit(2, 0.9)]], k=10)
    scores = {h.chunk_id: h.score for h in fused}
    assert scores == {1: pytest.approx(1 / 11), 2: pytest.approx(1 / 12 + 1 / 11)}
    assert ids(fused) == [2, 1]


def test_ties_keep_the_order_first_seen_and_duplicates_count_once() -> None:
    fused = reciprocal_rank_fusion([[hit(7), hit(7), hit(8)], [hit(8), hit(7)]])
    # Without the repeat, 7 ranks 1 and 2, 8 ranks 2 and 1: a tie, which 7 wins by coming first.
    assert ids(fused) == [7, 8]
    assert fused[0].score == pytest.approx(fused[1].score)
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


def test_a_negative_fusion_constant_is_refused() -> None:
    with pytest.raises(DocumentError, match="fusion constant"):
        reciprocal_rank_fusion([[hit(1)]], k=-1)


@pytest.fixture
def zoo(tmp_path: Path):
    """Chunk 'both' has the word and a vector near the query; 'words' has the word most
    often but a far vector; 'vector' has the query's own vector but not the word."""
    rng = np.random.default_rng(11)
    query = rng.standard_normal(DIM).astype(np.float32)
    texts = {
        "words": "zebra zebra zebra stripes",
        "both": "a zebra stood by the fence with cows and sheep in the long grass",
        "vector": "an unrelated note about tea",
    }
    planted = {"words": -query, "both": query + 0.05 * rng.standard_normal(DIM), "vector": query}
    fillers = [f"filler note {i} about rivers and hills" for i in range(12)]
    chunks, rows = [], []
    for name, text in texts.items():
        chunks.append(Chunk(text=text, page=None, start=0, end=len(text), heading=name))
        rows.append(planted[name])
    for text in fillers:
        chunks.append(Chunk(text=text, page=None, start=0, end=len(text)))
        rows.append(rng.standard_normal(DIM))
    with Index.create(tmp_path / "zoo.sqlite", embedder="test", dimensions=DIM) as made:
        made.put_file(
            path="zoo.txt", sha256="a" * 64, size=1, chunks=chunks, vectors=np.array(rows)
        )
        yield made, query


def test_each_mode_ranks_by_what_it_reads(zoo: tuple[Index, np.ndarray]) -> None:
    index, query = zoo
    bm25 = search(index, "zebra", query_vector=None, k=2, mode="bm25")
    assert [h.text for h in bm25] == ["zebra zebra zebra stripes", bm25[1].text]
    assert "fence" in bm25[1].text
    vector = search(index, "zebra", query_vector=query, k=2, mode="vector")
    assert [h.text for h in vector][0] == "an unrelated note about tea"
    assert "fence" in vector[1].text
    hybrid = search(index, "zebra", query_vector=query, k=3)
    assert "fence" in hybrid[0].text
    assert hybrid[0].score == pytest.approx(2 / 62)
    assert len(hybrid) == 3


def test_hybrid_with_a_query_of_no_words_falls_back_on_vectors(
    zoo: tuple[Index, np.ndarray],
) -> None:
    index, query = zoo
    hybrid = search(index, "?!", query_vector=query, k=2, mode="hybrid")
    assert hybrid[0].text == "an unrelated note about tea"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"mode": "semantic"},
            "unknown retrieval mode 'semantic'; use one of bm25, vector, hybrid",
        ),
        ({"mode": "vector", "query_vector": None}, "needs the query's vector"),
        ({"mode": "hybrid", "query_vector": None}, "needs the query's vector"),
        ({"k": 0}, "at least one"),
    ],
)
def test_a_search_that_cannot_run_says_why(
    zoo: tuple[Index, np.ndarray], arguments: dict, message: str
) -> None:
    index, query = zoo
    given = {"query_vector": query, **arguments}
    with pytest.raises(DocumentError, match=message):
        search(index, "zebra", **given)

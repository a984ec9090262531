"""Query latency of a document collection's index: BM25, vector and hybrid, p50 and p95.

Indexes of 10k and 100k chunks of random text (words drawn Zipf-like from a 5000-word
vocabulary, 60 words a chunk) with random unit vectors of 384 dimensions (all-MiniLM-L6-v2's),
written 1000 chunks a file, one transaction each; then the same random queries (3 words and a
vector) in each mode through owl.docs.retrieve.search, k=5 and depth 50. No model is loaded:
this measures the index, not the embedder.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/docs_latency.py [--sizes 10000 100000] [--queries 200] [--home DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import cpu_name, load_average, run_and_print

DIMENSIONS = 384
VOCABULARY = 5000
WORDS_PER_CHUNK = 60
CHUNKS_PER_FILE = 1000
MODES = ("bm25", "vector", "hybrid")


def log(message: str) -> None:
    print(f"[docs_latency] {message}", file=sys.stderr, flush=True)


def unit_vectors(rng: np.random.Generator, rows: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def word_sampler(rng: np.random.Generator):  # noqa: ANN201
    words = np.array([f"w{i}" for i in range(VOCABULARY)])
    weights = 1.0 / np.arange(1, VOCABULARY + 1)  # Zipf: a few common words, a long tail
    weights /= weights.sum()
    return lambda count: words[rng.choice(VOCABULARY, size=count, p=weights)]


def build(path: Path, size: int, rng: np.random.Generator) -> dict:
    from owl.docs.index import Index
    from owl.docs.types import Chunk

    sample = word_sampler(rng)
    started = time.perf_counter()
    with Index.create(path, embedder="random", dimensions=DIMENSIONS) as index:
        for number, first in enumerate(range(0, size, CHUNKS_PER_FILE)):
            rows = min(CHUNKS_PER_FILE, size - first)
            words = sample(rows * WORDS_PER_CHUNK).reshape(rows, WORDS_PER_CHUNK)
            texts = [" ".join(row) for row in words]
            chunks = [Chunk(text=text, page=1, start=0, end=len(text)) for text in texts]
            index.put_file(
                path=f"file-{number}.txt",
                sha256=f"{number:064x}",
                size=sum(map(len, texts)),
                chunks=chunks,
                vectors=unit_vectors(rng, rows),
            )
        seconds = time.perf_counter() - started
        stats = index.stats()
    return {"build_s": round(seconds, 2), "chunks_per_s": round(size / seconds), **stats}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(path: Path, queries: int, rng: np.random.Generator, depth: int) -> dict:
    from owl.docs.index import Index
    from owl.docs.retrieve import search

    sample = word_sampler(rng)
    texts = [" ".join(sample(3)) for _ in range(queries)]
    vectors = unit_vectors(rng, queries)
    result = {}
    with Index.open(path) as index:
        for mode in MODES:
            for text, vector in zip(texts[:5], vectors[:5], strict=True):  # warm-up
                search(index, text, query_vector=vector, k=5, mode=mode, depth=depth)
            times = []
            for text, vector in zip(texts, vectors, strict=True):
                started = time.perf_counter()
                search(index, text, query_vector=vector, k=5, mode=mode, depth=depth)
                times.append((time.perf_counter() - started) * 1000)
            result[mode] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 0.95), 2),
            }
    return result


def run(args: argparse.Namespace, home: Path) -> dict:
    rng = np.random.default_rng(0)
    sizes = {}
    for size in args.sizes:
        path = home / "docs" / f"bench-{size}.sqlite"
        log(f"indexing {size} chunks")
        built = build(path, size, rng)
        log(f"querying {size} chunks ({args.queries} queries a mode)")
        sizes[str(size)] = {**built, **measure(path, args.queries, rng, args.depth)}
    return {
        "bench": "docs_latency",
        "dimensions": DIMENSIONS,
        "words_per_chunk": WORDS_PER_CHUNK,
        "queries": args.queries,
        "k": 5,
        "depth": args.depth,
        "sizes": sizes,
        "cpu": cpu_name(),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()

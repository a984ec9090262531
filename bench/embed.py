"""Embeddings per second on the bundled SmolLM2 (mean pooling): batched vs one by one.

64 short texts, embedded in one call (several sequences per llama_decode) and one call per
text, with owl.engine.Embedder at 1 thread. The first pass of each is untimed (warm-up).

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/embed.py [--runs 3] [--threads 1] [--home DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

MODEL = "smollm2"
TEXTS = 64
SUBJECTS = ["the weather", "a train", "my cat", "the budget", "a new song", "the river", "tea"]


def log(message: str) -> None:
    print(f"[embed] {message}", file=sys.stderr, flush=True)


def texts() -> list[str]:
    return [f"Sentence {i} is about {SUBJECTS[i % len(SUBJECTS)]}." for i in range(TEXTS)]


def best_rate(call, runs: int) -> tuple[float, float]:  # noqa: ANN001
    call()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return TEXTS / min(times), TEXTS / statistics.median(times)


def run(args: argparse.Namespace, home: Path) -> dict:
    from owl.config import Settings
    from owl.engine.loading import load_embedder
    from owl.pull import open_store, pull

    settings = Settings(home=home, ctx=512, threads=args.threads)
    store = open_store(settings)
    manifest = pull(MODEL, store=store, settings=settings)
    embedder = load_embedder(manifest, store=store, settings=settings)
    inputs = texts()
    try:
        log("batched")
        batch_best, batch_median = best_rate(lambda: embedder.embed(inputs), args.runs)
        log("one by one")
        single_best, single_median = best_rate(
            lambda: [embedder.embed([text]) for text in inputs], args.runs
        )
        tokens = embedder.embed(inputs).total_tokens
    finally:
        embedder.close()
    return {
        "bench": "embed",
        "model": MODEL,
        "pooling": "mean",
        "texts": TEXTS,
        "tokens": tokens,
        "threads": args.threads,
        "runs": args.runs,
        "batched_embeddings_per_s": round(batch_best, 1),
        "batched_median_per_s": round(batch_median, 1),
        "single_embeddings_per_s": round(single_best, 1),
        "single_median_per_s": round(single_median, 1),
        "speedup": round(batch_best / single_best, 2),
        "cpu": cpu_name(),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()

"""Document ingestion speed: is the index the bottleneck, or the embedding model?

A seeded generator writes a corpus of Markdown and text files (English-like paragraphs from
bench/data/docs_words.json, under headings; `--mb` of it). In one run, with the built-in
embedding model (minilm):
(a) the embedder alone on exactly the chunks that ingestion makes (walked, read and chunked as
    owl.docs.ingest does, embedded in batches of 64, only the embed calls timed), before and
    after (b): chunks/s, the mean of the two;
(b) owl.docs.ingest.add_documents end to end into a fresh index: chunks/s, s/MB, and the
    ratio of its chunks/s to (a)'s (issue 19's target: at least 0.8);
(c) add_documents again over the unchanged corpus (every file hashed, none read): seconds.
One untimed embed call first warms the model up. The machine's load is reported before and
after each phase: on a shared machine it moves the ratio by tens of percent either way, so
the ingestion's own split (the share of its time spent in embed calls, and the seconds
outside them) says more steadily whether the index is the bottleneck.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/docs_ingest.py [--mb 2] [--seed 19] [--threads N] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from common import in_home, load_average, log, print_result

from owl.config import Settings
from owl.docs.chunking import chunk_pages
from owl.docs.embedding import load_text_embedder
from owl.docs.files import Candidate, walk
from owl.docs.index import Index
from owl.docs.ingest import add_documents, embedding_text
from owl.docs.readers import read
from owl.pull import open_store

MODEL = "minilm"
BATCH = 64  # chunks a call, as owl.docs.ingest.BATCH_CHUNKS
CHUNK_SIZE, OVERLAP = 1000, 150  # add_documents' defaults, as `owl docs add` uses them
WORDS = Path(__file__).parent / "data" / "docs_words.json"
MB = 1_000_000


def sentence(rng: random.Random, words: dict[str, list[str]]) -> str:
    pick = rng.choice
    parts = [
        pick(["The", "A", "Every", "One"]), pick(words["adjectives"]), pick(words["nouns"]),
        pick(words["adverbs"]) if rng.random() < 0.3 else "", pick(words["verbs"]),
        pick(["the", "a", "each"]), pick(words["nouns"]), pick(words["prepositions"]),
        "the", pick(words["adjectives"]), pick(words["nouns"]),
    ]  # fmt: skip
    if rng.random() < 0.25:
        parts.insert(0, pick(words["connectives"]))
        parts[1] = parts[1].lower()
    return " ".join(part for part in parts if part) + "."


def document(rng: random.Random, words: dict[str, list[str]], *, markdown: bool) -> str:
    """One file: a title, 3–8 sections of 2–6 paragraphs of 3–8 sentences each."""
    noun = rng.choice(words["nouns"])
    lines = [f"# The {rng.choice(words['adjectives'])} {noun}" if markdown else noun.title(), ""]
    for _ in range(rng.randint(3, 8)):
        heading = f"{rng.choice(words['adjectives'])} {rng.choice(words['nouns'])}".capitalize()
        lines += [f"## {heading}" if markdown else heading, ""]
        for _ in range(rng.randint(2, 6)):
            lines += [" ".join(sentence(rng, words) for _ in range(rng.randint(3, 8))), ""]
    return "\n".join(lines)


def write_corpus(folder: Path, *, total_bytes: int, seed: int) -> tuple[int, int]:
    """Files under `folder` until `total_bytes` are written; (files, bytes)."""
    words = json.loads(WORDS.read_text())
    rng = random.Random(seed)
    files = written = 0
    while written < total_bytes:
        markdown = files % 3 != 2  # two Markdown files to each plain-text one
        text = document(rng, words, markdown=markdown)
        path = folder / f"part{files // 100:02d}" / f"doc{files:05d}.{'md' if markdown else 'txt'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files += 1
        written += len(text.encode())
    return files, written


def chunk_texts(corpus: Path) -> list[str]:
    """What add_documents will embed: every file walked, read and chunked as it does them."""
    texts = []
    for item in walk([corpus.resolve()]):
        if isinstance(item, Candidate):
            chunks = chunk_pages(read(item), size=CHUNK_SIZE, overlap=OVERLAP)
            texts.extend(embedding_text(chunk) for chunk in chunks)
    return texts


def embed_alone(embedder, texts: list[str]) -> tuple[float, int]:  # noqa: ANN001
    """Seconds spent in the embed calls alone, and the tokens embedded."""
    seconds, tokens = 0.0, 0
    for start in range(0, len(texts), BATCH):
        batch = texts[start : start + BATCH]
        began = time.perf_counter()
        result = embedder.embed(batch, normalize=True, truncate=True)
        seconds += time.perf_counter() - began
        tokens += result.total_tokens
    return seconds, tokens


def run(args: argparse.Namespace, home: Path) -> dict:
    settings = Settings(home=home, **({"threads": args.threads} if args.threads else {}))
    store = open_store(settings)
    corpus = home / "corpus"
    files, corpus_bytes = write_corpus(corpus, total_bytes=int(args.mb * MB), seed=args.seed)
    log(f"[docs_ingest] corpus: {files} files, {corpus_bytes / MB:.2f} MB")
    embedder, identity = load_text_embedder(MODEL, store=store, settings=settings)
    phases: dict[str, dict] = {}
    try:
        texts = chunk_texts(corpus)
        embedder.embed(texts[:BATCH], normalize=True, truncate=True)  # warm-up, untimed
        log(f"[docs_ingest] (a) embedder alone: {len(texts)} chunks")
        load_before = load_average()
        alone_s, tokens = embed_alone(embedder, texts)
        phases["embedder_alone"] = {"load_before": load_before, "load_after": load_average()}

        log("[docs_ingest] (b) add_documents into a fresh index")
        path = home / "bench.owl-index"
        with Index.create(path, embedder=identity, dimensions=embedder.dimensions) as index:
            load_before = load_average()
            first = add_documents(index, [corpus], collection="bench", embedder=embedder,
                                  chunk_size=CHUNK_SIZE, overlap=OVERLAP)  # fmt: skip
            phases["ingest"] = {"load_before": load_before, "load_after": load_average()}
            log("[docs_ingest] (c) add_documents again, nothing changed")
            again = add_documents(index, [corpus], collection="bench", embedder=embedder,
                                  chunk_size=CHUNK_SIZE, overlap=OVERLAP)  # fmt: skip
            stats = index.stats()
        log("[docs_ingest] (a) embedder alone again, after the ingestion")
        load_before = load_average()
        alone_after_s, _ = embed_alone(embedder, texts)
        phases["embedder_alone_after"] = {"load_before": load_before, "load_after": load_average()}
    finally:
        embedder.close()
    # The embedder is timed before and after the ingestion, and the mean of the two taken,
    # so that a load on the shared machine that rises or falls through the run does not
    # favour either side of the ratio.
    alone_rates = [len(texts) / alone_s, len(texts) / alone_after_s]
    alone_rate = sum(alone_rates) / 2
    ingest_rate = first.chunks / first.seconds
    return {
        "model": MODEL,
        "threads": settings.threads,
        "corpus_files": files,
        "corpus_mb": round(corpus_bytes / MB, 3),
        "chunks": len(texts),
        "tokens": tokens,
        "embedder_alone_chunks_per_s": round(alone_rate, 2),
        "embedder_alone_before_after": [round(rate, 2) for rate in alone_rates],
        "ingest_chunks": first.chunks,
        "ingest_s": round(first.seconds, 2),
        "ingest_embed_s": round(first.embed_seconds, 2),
        "ingest_chunks_per_s": round(ingest_rate, 2),
        "ingest_s_per_mb": round(first.seconds / (corpus_bytes / MB), 2),
        "ratio_ingest_to_embedder": round(ingest_rate / alone_rate, 3),
        "target_ratio": 0.8,
        # Within the one ingestion, whatever the machine's load: the time not spent in the
        # embedder (walking, hashing, waiting for the reader, SQLite writes) and its share.
        "ingest_other_s": round(first.seconds - first.embed_seconds, 2),
        "ingest_embed_share": round(first.embed_seconds / first.seconds, 4),
        "incremental_s": round(again.seconds, 3),
        "incremental_unchanged_files": len(again.files_unchanged),
        "incremental_files_read": len(again.files_read),
        "index_chunks": stats["chunks"],
        "index_mb": round(stats["bytes"] / MB, 2),
        "phase_load": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=2.0, help="corpus size in MB (10^6 bytes)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    started, load_before = time.perf_counter(), load_average()
    results = in_home(run, args)
    print_result("docs_ingest", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()

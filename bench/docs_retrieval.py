"""Retrieval quality of `owl docs`: recall@5 for BM25, vectors and hybrid on questions about
Debian's own documentation (/usr/share/doc), which a Debian machine has offline.

bench/data/docs_questions.jsonl holds the questions, written by reading those files: each
names the file (a path under /usr/share/doc) and a short string that the chunk answering it
contains. Most questions are paraphrases (words the passage does not use: a test of the
vectors), some turn on a rare exact term (an option, a variable: a test of BM25).

The named files (with --whole-packages, every other document of their packages too, as
distractors) are copied into a temporary folder (a name owl does not read, such as
README.Debian, gets a .txt suffix; missing files are skipped and counted, with their
questions) and indexed with the built-in embedding model (minilm) by add_documents, as
`owl docs add` does. For each mode, a question is answered when one of its top 5 chunks is
from the right file and contains the string (whitespace runs compared as one space); the
file-level recall asks only for a chunk from the right file. A question whose string is in
no chunk of its file is a broken question: it is reported and left out.

Prints one JSON line on stdout; progress (and, with --misses, each question a mode missed)
goes to stderr. Never a timed assert.

    .venv/bin/python bench/docs_retrieval.py [--k 5] [--whole-packages] [--misses] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from common import in_home, load_average, log, print_result

from owl.config import Settings
from owl.docs.chunking import chunk_pages
from owl.docs.embedding import load_text_embedder
from owl.docs.files import BUILTIN_KINDS, Candidate, walk
from owl.docs.index import Index
from owl.docs.ingest import add_documents
from owl.docs.readers import read
from owl.docs.retrieve import MODES, search
from owl.pull import open_store

MODEL = "minilm"
DOCS = Path("/usr/share/doc")
QUESTIONS = Path(__file__).parent / "data" / "docs_questions.jsonl"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Question:
    question: str
    file: str  # under /usr/share/doc
    answer_contains: str


def squeezed(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                questions.append(Question(**json.loads(line)))
            except (ValueError, TypeError) as err:
                raise SystemExit(
                    f"{path}:{number}: not a question ({err}); each line is a JSON object "
                    'with "question", "file" and "answer_contains"'
                ) from None
    return questions


def package_files(named: set[str]) -> set[str]:
    """The other documents of the named files' packages (/usr/share/doc/PACKAGE/…), as
    distractors: every file owl reads there and every uncompressed README, less an HTML
    page beside a Markdown file of the same name (its twin, which would take the named
    file's hits)."""
    others = set()
    for package in sorted({name.split("/", 1)[0] for name in named}):
        for source in sorted((DOCS / package).rglob("*")):
            readable = source.suffix.lower() in BUILTIN_KINDS or (
                source.name.startswith("README") and source.suffix != ".gz"
            )
            if not readable or not source.is_file():
                continue
            if source.suffix.lower() in (".html", ".htm") and source.with_suffix(".md").exists():
                continue
            others.add(str(source.relative_to(DOCS)))
    return others - named


def copy_corpus(names: set[str], folder: Path) -> dict[str, Path]:
    """Each named file that exists, copied under `folder` (a suffix owl reads added where
    the name has none); its /usr/share/doc path → the copy's resolved path."""
    copies = {}
    for name in sorted(names):
        source = DOCS / name
        if not source.is_file():
            continue
        target = folder / name
        if target.suffix.lower() not in BUILTIN_KINDS:
            target = target.with_name(target.name + ".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copies[name] = target.resolve()
    return copies


def chunk_texts(paths: list[Path]) -> dict[str, list[str]]:
    """Each file's chunks (squeezed), made as add_documents makes them."""
    texts = {}
    for item in walk(paths):
        if isinstance(item, Candidate):
            texts[str(item.path)] = [squeezed(c.text) for c in chunk_pages(read(item))]
    return texts


def run(args: argparse.Namespace, home: Path) -> dict:
    questions = load_questions(args.questions)
    corpus = home / "corpus"
    named = {q.file for q in questions}
    copies = copy_corpus(named, corpus)
    missing = sorted(named - set(copies))
    distractors = copy_corpus(package_files(named), corpus) if args.whole_packages else {}
    for name in missing:
        log(f"[docs_retrieval] not on this machine, skipped: {DOCS / name}")
    if not copies:
        raise SystemExit(f"none of the files the questions name is under {DOCS}: nothing to ask")
    chunks = chunk_texts(list(copies.values()))
    usable, broken = [], []
    for q in questions:
        if q.file not in copies:
            continue
        path = str(copies[q.file])
        answer = squeezed(q.answer_contains)
        (usable if any(answer in text for text in chunks.get(path, ())) else broken).append(q)
    for q in broken:
        log(f"[docs_retrieval] broken question (string in no chunk of {q.file}): {q.question}")

    settings = Settings(home=home)
    store = open_store(settings)
    embedder, identity = load_text_embedder(MODEL, store=store, settings=settings)
    found = {mode: 0 for mode in MODES}
    found_file = {mode: 0 for mode in MODES}
    try:
        path = home / "retrieval.owl-index"
        with Index.create(path, embedder=identity, dimensions=embedder.dimensions) as index:
            log(f"[docs_retrieval] indexing {len(copies)} files, {len(distractors)} distractors")
            report = add_documents(index, [corpus], collection="bench", embedder=embedder)
            for q in usable:
                right = str(copies[q.file])
                answer = squeezed(q.answer_contains)
                vector = embedder.embed([q.question], normalize=True, truncate=True).vectors[0]
                for mode in MODES:
                    hits = search(index, q.question, query_vector=vector, k=args.k, mode=mode)
                    in_file = [hit for hit in hits if hit.path == right]
                    found_file[mode] += bool(in_file)
                    hit = any(answer in squeezed(h.text) for h in in_file)
                    found[mode] += hit
                    if args.misses and not hit:
                        log(f"[docs_retrieval] {mode} missed: {q.question} ({q.file})")
    finally:
        embedder.close()
    n = len(usable)

    def recall(counts: dict[str, int]) -> dict[str, float | None]:
        return {mode: round(counts[mode] / n, 3) if n else None for mode in MODES}

    chunk_recall = recall(found)
    return {
        "model": MODEL,
        "k": args.k,
        "n": n,
        "questions": len(questions),
        "files": len(copies),
        "files_missing": len(missing),
        "distractor_files": len(distractors),
        "questions_skipped_missing_file": sum(q.file not in copies for q in questions),
        "questions_broken": len(broken),
        "chunks": report.chunks,
        "index_s": round(report.seconds, 1),
        f"recall_at_{args.k}": chunk_recall,
        f"file_recall_at_{args.k}": recall(found_file),
        "hybrid_beats_both": n > 0
        and chunk_recall["hybrid"] > max(chunk_recall["bm25"], chunk_recall["vector"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5, help="chunks retrieved a question")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--misses", action="store_true", help="log each miss to stderr")
    parser.add_argument(
        "--whole-packages",
        action="store_true",
        help="index the named files' packages' other documents too, as distractors",
    )
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    if args.k < 1:
        parser.error(f"--k must be at least 1, not {args.k}")
    started, load_before = time.perf_counter(), load_average()
    results = in_home(run, args)
    print_result("docs_retrieval", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()

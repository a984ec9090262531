"""Adding documents to a collection: walk, hash, read, chunk, embed, index — incrementally.

A file whose sha256 is the one indexed is not read again; a file under the folders named that
is gone (or is now skipped) leaves the index. Reading and chunking run on a thread of their own
while the embedder works through the previous batch, so that the index is not the bottleneck.
Each batch of files is written in one SQLite transaction: an ingestion killed half-way leaves
every earlier batch indexed and the collection usable.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from owl.docs.chunking import chunk_pages
from owl.docs.files import Candidate, Limits, read_bytes, walk
from owl.docs.index import Index
from owl.docs.readers import read
from owl.docs.types import Chunk, Skipped
from owl.errors import DocumentError

BATCH_CHUNKS = 64  # chunks embedded per call: enough to keep the embedder's batches full
_QUEUE_FILES = 32  # files read ahead of the embedder


class TextEmbedder(Protocol):
    name: str
    dimensions: int

    def embed(
        self, texts: Sequence[str], *, normalize: bool = True, truncate: bool = False
    ) -> Any: ...


@dataclass(frozen=True)
class IngestProgress:
    """Where an ingestion is: files handled of those found, chunks embedded, seconds so far."""

    files_done: int
    files_total: int
    chunks: int
    seconds: float
    current: str = ""


@dataclass
class IngestReport:
    """What one `owl docs add` did."""

    collection: str
    files_read: list[str] = field(default_factory=list)
    files_unchanged: list[str] = field(default_factory=list)
    files_skipped: list[Skipped] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    bytes_read: int = 0
    cancelled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "files_read": self.files_read,
            "files_unchanged": self.files_unchanged,
            "files_skipped": [{"path": s.path, "reason": s.reason} for s in self.files_skipped],
            "files_removed": self.files_removed,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "chunks_per_second": round(self.chunks / self.seconds, 2) if self.seconds else None,
            "bytes_read": self.bytes_read,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class _Read:
    """A file read and chunked, waiting for its vectors (chunks None: indexed already)."""

    path: str
    sha256: str
    size: int
    chunks: list[Chunk] | None


def embedding_text(chunk: Chunk) -> str:
    """What the embedder sees of a chunk: its section heading too, which the chunk's own text
    may lack (a paragraph under "## Returns" is about returns)."""
    if chunk.heading and not chunk.text.lstrip().startswith(chunk.heading):
        return f"{chunk.heading}\n{chunk.text}"
    return chunk.text


def add_documents(
    index: Index,
    roots: Sequence[Path],
    *,
    collection: str,
    embedder: TextEmbedder,
    limits: Limits | None = None,
    chunk_size: int = 1000,
    overlap: int = 150,
    progress: Callable[[IngestProgress], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> IngestReport:
    """Index the files under `roots` (files or folders) into `index`, embedding with
    `embedder` (the collection's own model). Returns what was read, skipped and removed.

    `cancelled` is asked after each file: once it says so, what was read is written and the
    ingestion ends (report.cancelled), leaving the rest for the next run."""
    limits = limits or Limits()
    started = time.perf_counter()
    report = IngestReport(collection=collection)
    resolved = [_existing(root) for root in roots]
    found = list(walk(resolved, limits=limits))
    candidates = [item for item in found if isinstance(item, Candidate)]
    report.files_skipped = [item for item in found if isinstance(item, Skipped)]
    known = {path: record.sha256 for path, record in index.files().items()}
    seen = {str(c.path) for c in candidates}
    done = 0

    def tick(current: str) -> None:
        if progress is not None:
            elapsed = time.perf_counter() - started
            progress(IngestProgress(done, len(candidates), report.chunks, elapsed, current))

    pending: list[_Read] = []
    for item in _read_ahead(
        candidates, known=known, limits=limits, size=chunk_size, overlap=overlap
    ):
        if cancelled():
            report.cancelled = True
            break
        done += 1
        if isinstance(item, Skipped):
            report.files_skipped.append(item)
            seen.discard(item.path)
        elif item.chunks is None:
            report.files_unchanged.append(item.path)
        else:
            pending.append(item)
            report.bytes_read += item.size
            if sum(len(p.chunks or ()) for p in pending) >= BATCH_CHUNKS:
                _write(index, pending, embedder=embedder, report=report)
                pending = []
        tick(item.path)
    if pending:
        _write(index, pending, embedder=embedder, report=report)
    gone = [path for path in known if _under(path, resolved) and path not in seen]
    if gone and not report.cancelled:
        with index.transaction():
            for path in gone:
                index.remove_file(path)
        report.files_removed = sorted(gone)
    report.seconds = time.perf_counter() - started
    tick("")
    return report


def _write(
    index: Index, files: list[_Read], *, embedder: TextEmbedder, report: IngestReport
) -> None:
    texts = [embedding_text(chunk) for item in files for chunk in item.chunks or ()]
    began = time.perf_counter()
    vectors = _vectors(embedder, texts)
    report.embed_seconds += time.perf_counter() - began
    offset = 0
    with index.transaction():
        for item in files:
            chunks = item.chunks or []
            count = len(chunks)
            index.put_file(
                path=item.path,
                sha256=item.sha256,
                size=item.size,
                chunks=chunks,
                vectors=vectors[offset : offset + count],
            )
            offset += count
    report.files_read.extend(item.path for item in files)
    report.chunks += len(texts)


def _vectors(embedder: TextEmbedder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, embedder.dimensions), dtype=np.float32)
    # A chunk longer than the model's window is embedded by its first tokens; BM25 still
    # sees all of it.
    embeddings = embedder.embed(texts, normalize=True, truncate=True)
    return np.asarray(embeddings.vectors, dtype=np.float32)


def _read_ahead(
    candidates: list[Candidate],
    *,
    known: dict[str, str],
    limits: Limits,
    size: int,
    overlap: int,
) -> Iterator[_Read | Skipped]:
    """Each candidate hashed, and read and chunked unless its digest is indexed already,
    produced on a thread of its own, in order. An unchanged file comes back with chunks=None."""
    results: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_FILES)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for candidate in candidates:
                if stop.is_set():
                    return
                results.put(_one(candidate, known=known, limits=limits, size=size, overlap=overlap))
        except BaseException as err:  # handed to the consumer, which raises it
            results.put(err)
        finally:
            results.put(end)

    reader = threading.Thread(target=produce, name="owl-docs-reader", daemon=True)
    reader.start()
    try:
        while (item := results.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get_nowait()
            except queue.Empty:
                reader.join(timeout=0.05)


def _one(
    candidate: Candidate, *, known: dict[str, str], limits: Limits, size: int, overlap: int
) -> _Read | Skipped:
    path = str(candidate.path)
    try:  # as the readers read it: no symlink swapped in since the walk, no fifo, bounded
        digest = hashlib.sha256(read_bytes(candidate, limits=limits)).hexdigest()
    except DocumentError as err:
        return Skipped(path, str(err))
    if known.get(path) == digest:
        return _Read(path, digest, candidate.size, None)
    try:
        pages = read(candidate, limits=limits)
    except DocumentError as err:
        return Skipped(path, str(err))
    return _Read(path, digest, candidate.size, chunk_pages(pages, size=size, overlap=overlap))


def _existing(root: Path) -> Path:
    path = Path(os.path.expanduser(root))
    if not path.exists():
        raise DocumentError(f"{root} does not exist; name files or folders that do")
    return path.resolve()


def _under(path: str, roots: Sequence[Path]) -> bool:
    return any(path == str(root) or path.startswith(str(root) + os.sep) for root in roots)

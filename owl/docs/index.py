"""A collection's index: its files, chunks, an FTS5 table for BM25 and a sqlite-vec table for
vectors in one SQLite file (owl.docs.index_file), written in transactions (WAL), so that an
ingestion killed at any point leaves the last committed index whole and readers never see half
a file.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from owl.docs.index_file import IndexMeta, apsw, check_shape, damaged, make_file, now, open_file
from owl.docs.types import Chunk, Hit
from owl.errors import DocumentError

KNN_LIMIT = 4096  # sqlite-vec refuses a larger k in one query
MAX_QUERY_TERMS = 64  # a pasted page still makes a query FTS5 answers quickly

# Letters and digits only: every FTS5 operator, quote, colon, star and bracket falls away.
_WORD = re.compile(r"[^\W_]+")
_HIT_COLUMNS = "c.id, c.path, c.page, c.span_start, c.span_end, c.text"


@dataclass(frozen=True)
class FileRecord:
    """One indexed file: its content digest and size when added, and how many chunks it made."""

    path: str
    sha256: str
    size: int
    chunks: int
    added_at: str  # ISO 8601, UTC


def fts_query(text: str) -> str:
    """The user's text as an FTS5 query that always parses: each word quoted, OR'ed together
    ("" when the text has no words, which matches nothing)."""
    terms = dict.fromkeys(word.lower() for word in _WORD.findall(text))
    return " OR ".join(f'"{term}"' for term in list(terms)[:MAX_QUERY_TERMS])


class Index:
    """One collection's SQLite index. Make one with create, open or open_or_create."""

    def __init__(self, connection: apsw.Connection, *, path: Path, meta: IndexMeta) -> None:
        self._connection: apsw.Connection | None = connection
        self._lock = threading.RLock()  # apsw refuses one connection used by two threads at once
        self._depth = 0  # open transactions and savepoints
        self.path = path
        self.name = path.stem
        self.meta = meta

    @property
    def embedder(self) -> str:
        """The embedder that made this index's vectors (a query must be embedded by it too)."""
        return self.meta.embedder

    @property
    def dimensions(self) -> int:
        """How many floats each of this index's vectors has."""
        return self.meta.dimensions

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | str, *, embedder: str, dimensions: int) -> Index:
        """Make a new, empty index at `path` and open it (DocumentError if one is there).
        A killed create leaves nothing at `path`."""
        path = Path(path)
        make_file(path, embedder=embedder, dimensions=dimensions)
        return cls.open(path)

    @classmethod
    def open(cls, path: Path | str) -> Index:
        """Open the index at `path`: CollectionNotFound if there is none, DocumentError if the
        file is not an owl index, is damaged, or was written by a newer owl."""
        path = Path(path)
        connection, meta = open_file(path)
        return cls(connection, path=path, meta=meta)

    @classmethod
    def open_or_create(cls, path: Path | str, *, embedder: str, dimensions: int) -> Index:
        """Open the index at `path`, or create it; refuse one built with another embedder or
        another number of dimensions (its vectors and the new ones would not compare)."""
        path = Path(path)
        check_shape(embedder, dimensions)
        if not path.exists():
            try:
                return cls.create(path, embedder=embedder, dimensions=dimensions)
            except DocumentError:
                if not path.exists():
                    raise
                # Another process created it first: fall through and check what it used.
        index = cls.open(path)
        built = index.meta
        if (built.embedder, built.dimensions) != (embedder, dimensions):
            index.close()
            raise DocumentError(
                f"collection '{index.name}' was built with {built.embedder} "
                f"({built.dimensions} dimensions), not {embedder} ({dimensions}); "
                f"rebuild it: owl docs rm {index.name} && owl docs add …"
            )
        return index

    # --- writing --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything written inside is committed together, or (on an exception) not at all.

        The first level takes the write lock at once (BEGIN IMMEDIATE), so a second writer
        waits up to BUSY_TIMEOUT_MS and is then refused; nested levels are savepoints."""
        with self._sql() as connection:
            savepoint = f"owl_{self._depth}"
            nested = self._depth > 0
            connection.execute(f"SAVEPOINT {savepoint}" if nested else "BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
                connection.execute(f"RELEASE {savepoint}" if nested else "COMMIT")
            except BaseException:
                # SQLite may have ended the transaction itself (a full disk): nothing to undo.
                with suppress(apsw.Error):
                    if nested:
                        connection.execute(f"ROLLBACK TO {savepoint}; RELEASE {savepoint}")
                    else:
                        connection.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1

    def put_file(
        self,
        *,
        path: str,
        sha256: str,
        size: int,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
    ) -> None:
        """Store one file's chunks and their vectors (one row each, in order), replacing
        whatever the index held for `path`; all of it or none of it is committed."""
        chunks = list(chunks)
        vectors = self._checked_vectors(vectors, rows=len(chunks))
        for chunk in chunks:
            if not 0 <= chunk.start <= chunk.end:
                raise DocumentError(f"chunk of {path} has a bad span {chunk.start}..{chunk.end}")
        with self.transaction(), self._sql() as connection:
            self._delete_rows(connection, path)
            connection.execute(
                "INSERT INTO files (path, sha256, size, chunks, added_at) VALUES (?, ?, ?, ?, ?)",
                (path, sha256, size, len(chunks), now()),
            )
            for chunk, vector in zip(chunks, vectors, strict=True):
                connection.execute(
                    "INSERT INTO chunks (path, page, span_start, span_end, heading, text) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (path, chunk.page, chunk.start, chunk.end, chunk.heading, chunk.text),
                )
                chunk_id = connection.last_insert_rowid()
                connection.execute(
                    "INSERT INTO chunks_fts (rowid, text, heading) VALUES (?, ?, ?)",
                    (chunk_id, chunk.text, chunk.heading),
                )
                connection.execute(
                    "INSERT INTO chunks_vec (rowid, embedding) VALUES (?, ?)",
                    (chunk_id, vector.tobytes()),
                )

    def add_roots(self, roots: Sequence[str]) -> None:
        """Remember the files and folders this collection was made from (each once, in the
        order first added), so that `owl docs add NAME` alone can read them again."""
        with self.transaction(), self._sql() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO roots (path) VALUES (?)", [(str(root),) for root in roots]
            )

    def remove_file(self, path: str) -> bool:
        """Remove a file and its chunks; False when the index did not hold it."""
        with self.transaction(), self._sql() as connection:
            return self._delete_rows(connection, path)

    def _delete_rows(self, connection: apsw.Connection, path: str) -> bool:
        rows = connection.execute(
            "SELECT id, text, heading FROM chunks WHERE path = ?", (path,)
        ).fetchall()
        # An external-content FTS5 table forgets a row only when told the values it indexed.
        connection.executemany(
            "INSERT INTO chunks_fts (chunks_fts, rowid, text, heading) VALUES ('delete', ?, ?, ?)",
            rows,
        )
        connection.executemany("DELETE FROM chunks_vec WHERE rowid = ?", [(r[0],) for r in rows])
        connection.execute("DELETE FROM chunks WHERE path = ?", (path,))
        connection.execute("DELETE FROM files WHERE path = ?", (path,))
        return connection.changes() > 0

    def _checked_vectors(self, vectors: np.ndarray, *, rows: int) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        expected = (rows, self.meta.dimensions)
        if array.shape != expected:
            raise DocumentError(
                f"collection '{self.name}' needs {rows} vectors of {self.meta.dimensions} "
                f"dimensions (one per chunk), got an array of shape {array.shape}"
            )
        if not np.isfinite(array).all():
            raise DocumentError("the embedder gave a vector with NaN or infinite values")
        return np.ascontiguousarray(array, dtype="<f4")  # sqlite-vec reads little-endian float32

    # --- reading --------------------------------------------------------------------------

    def files(self) -> dict[str, FileRecord]:
        """Every indexed file, by path."""
        with self._sql() as connection:
            rows = connection.execute(
                "SELECT path, sha256, size, chunks, added_at FROM files ORDER BY path"
            ).fetchall()
        return {row[0]: FileRecord(*row) for row in rows}

    def roots(self) -> list[str]:
        """The files and folders given to add_roots, in the order first added."""
        with self._sql() as connection:
            return [row[0] for row in connection.execute("SELECT path FROM roots ORDER BY id")]

    def bm25(self, query: str, k: int) -> list[Hit]:
        """The `k` chunks that best match the words of `query` (BM25; higher score is better).
        Any text is a safe query: its words are quoted, so FTS5 syntax in it means nothing."""
        match = fts_query(query)
        if not match or k <= 0:
            return []
        with self._sql() as connection:
            rows = connection.execute(
                "WITH top AS (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY rank LIMIT ?) "
                f"SELECT {_HIT_COLUMNS}, top.rank FROM top JOIN chunks c ON c.id = top.rowid "
                "ORDER BY top.rank, c.id",
                (match, k),
            ).fetchall()
        # FTS5's bm25() is negative, lower is better: its negation is positive, higher better.
        return [_hit(row, score=-row[6]) for row in rows]

    def nearest(self, vector: Sequence[float] | np.ndarray, k: int) -> list[Hit]:
        """The `k` chunks whose vectors are nearest `vector` (score: 1 - cosine distance)."""
        query = np.asarray(vector, dtype=np.float32)
        if query.shape != (self.meta.dimensions,):
            raise DocumentError(
                f"collection '{self.name}' holds vectors of {self.meta.dimensions} dimensions "
                f"({self.meta.embedder}); the query vector has shape {query.shape}"
            )
        if not np.isfinite(query).all() or not np.any(query):
            raise DocumentError("the query vector is zero or not finite, so it has no direction")
        if k <= 0:
            return []
        with self._sql() as connection:
            rows = connection.execute(
                "WITH knn AS (SELECT rowid, distance FROM chunks_vec "
                "WHERE embedding MATCH ? AND k = ?) "
                f"SELECT {_HIT_COLUMNS}, knn.distance FROM knn JOIN chunks c ON c.id = knn.rowid "
                "ORDER BY knn.distance, c.id",
                (query.astype("<f4").tobytes(), min(k, KNN_LIMIT)),
            ).fetchall()
        return [_hit(row, score=1.0 - row[6]) for row in rows if row[6] is not None]

    def chunk(self, chunk_id: int) -> Hit:
        """One chunk by its id (score 0); DocumentError if the index has no such chunk."""
        with self._sql() as connection:
            row = connection.execute(
                f"SELECT {_HIT_COLUMNS} FROM chunks c WHERE c.id = ?", (chunk_id,)
            ).fetchone()
        if row is None:
            raise DocumentError(f"collection '{self.name}' has no chunk {chunk_id}")
        return _hit(row, score=0.0)

    def stats(self) -> dict:
        """How much the index holds: files, chunks, and bytes on disk (with its WAL)."""
        with self._sql() as connection:
            files = connection.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = connection.execute("SELECT count(*) FROM chunks").fetchone()[0]
        size = 0
        for suffix in ("", "-wal"):
            with suppress(FileNotFoundError):
                size += os.stat(f"{self.path}{suffix}").st_size
        return {"files": files, "chunks": chunks, "bytes": size}

    # --- the connection -------------------------------------------------------------------

    @contextmanager
    def _sql(self) -> Iterator[apsw.Connection]:
        """The connection, held by this thread, with SQLite's errors said as DocumentErrors."""
        with self._lock:
            if self._connection is None:
                raise DocumentError(f"the index of collection '{self.name}' is closed")
            try:
                yield self._connection
            except apsw.BusyError as err:
                raise DocumentError(
                    f"collection '{self.name}' is being written by another owl process; "
                    "try again when it finishes"
                ) from err
            except apsw.Error as err:
                raise DocumentError(damaged(self.name, self.path, err)) from err

    def close(self) -> None:
        """Close the index (a no-op the second time)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _hit(row: tuple, *, score: float) -> Hit:
    chunk_id, path, page, start, end, text = row[:6]
    return Hit(
        path=path, page=page, start=start, end=end, score=float(score), text=text, chunk_id=chunk_id
    )

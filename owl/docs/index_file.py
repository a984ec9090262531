"""The SQLite file under a collection's index: its schema, its meta rows, making one whole and
opening one safely (owl.docs.index reads and writes through what these return).

Python's own sqlite3 may be built without loadable extensions (this machine's is), so the file
is opened with apsw, whose bundled SQLite loads sqlite-vec on every build.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from owl.errors import CollectionNotFound, DocumentError

try:
    import apsw
    import sqlite_vec
except ImportError:  # owl[docs] is not installed: require_extra says so when a file is used
    apsw = None
    sqlite_vec = None

SCHEMA_VERSION = 1
FORMAT = "owl-docs-index"
MAX_DIMENSIONS = 8192  # sqlite-vec's limit for a float[] column
BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another process's write to finish


@dataclass(frozen=True)
class IndexMeta:
    """What an index was built with; a query vector must come from the same embedder."""

    schema_version: int
    embedder: str
    dimensions: int
    created: str  # ISO 8601, UTC


def schema(dimensions: int) -> str:
    """The tables of a new index whose vectors have `dimensions` floats."""
    # FTS5 reads text and heading from chunks (content=), so the text is stored once. Its rows
    # are written beside the chunks' in Python, not by triggers, which trusted_schema=OFF
    # refuses for virtual tables.
    return f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE roots (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
        CREATE TABLE files (
            path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
            chunks INTEGER NOT NULL, added_at TEXT NOT NULL);
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, page INTEGER,
            span_start INTEGER NOT NULL, span_end INTEGER NOT NULL,
            heading TEXT NOT NULL, text TEXT NOT NULL);
        CREATE INDEX chunks_by_path ON chunks (path);
        CREATE VIRTUAL TABLE chunks_fts USING fts5 (
            text, heading, content = 'chunks', content_rowid = 'id',
            tokenize = 'porter unicode61 remove_diacritics 2');
        INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('rank', 'bm25(1.0, 0.5)');
        CREATE VIRTUAL TABLE chunks_vec USING vec0 (
            embedding float[{dimensions}] distance_metric=cosine);
    """


def now() -> str:
    """The time now, as the index records it (ISO 8601, UTC, to the second)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def require_extra() -> None:
    """DocumentError saying how to install apsw and sqlite-vec, when they are missing."""
    if apsw is None or sqlite_vec is None:
        raise DocumentError("owl docs needs apsw and sqlite-vec: pip install 'owl[docs]'")


def check_shape(embedder: str, dimensions: int) -> None:
    """DocumentError unless `embedder` names one and `dimensions` fits a vec0 column."""
    if not embedder:
        raise DocumentError("an index needs the name of the embedder that made its vectors")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise DocumentError(f"dimensions must be a whole number, not {dimensions!r}")
    if not 1 <= dimensions <= MAX_DIMENSIONS:
        raise DocumentError(f"dimensions must be between 1 and {MAX_DIMENSIONS}, not {dimensions}")


def make_file(path: Path, *, embedder: str, dimensions: int) -> None:
    """Write a new, empty index at `path` (DocumentError if something is there already).

    It is built under a temporary name and linked into place whole, so a killed create
    leaves nothing at `path`."""
    require_extra()
    check_shape(embedder, dimensions)
    exists = DocumentError(f"collection '{path.stem}' already exists at {path}")
    if path.exists():
        raise exists
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        connection = _connect(temporary, create=True)
        try:
            # WAL is a property of the file: every later connection uses it too.
            connection.execute("PRAGMA journal_mode = WAL")
            with connection:
                connection.execute(schema(dimensions))
                connection.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("embedder", embedder),
                        ("dimensions", str(dimensions)),
                        ("created", now()),
                    ],
                )
        finally:
            connection.close()  # the last connection to close folds the WAL into the file
        try:
            os.link(temporary, path)  # unlike a rename, never replaces a file made meanwhile
        except FileExistsError:
            raise exists from None
    except apsw.Error as err:
        raise DocumentError(f"could not create collection '{path.stem}' at {path}: {err}") from err
    finally:
        for leftover in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.unlink(f"{temporary}{leftover}")


def open_file(path: Path) -> tuple[apsw.Connection, IndexMeta]:
    """A connection to the index at `path` and what it was built with: CollectionNotFound if
    there is none, DocumentError if the file is not an owl index, is damaged, or was written
    by a newer owl. Opening writes nothing."""
    require_extra()
    name = path.stem
    if not path.exists():
        raise CollectionNotFound(
            f"no document collection '{name}' (looked for {path}); "
            f"add documents to it with `owl docs add {name} PATH...`"
        )
    if not path.is_file():
        raise DocumentError(f"{path} is not a file, so not a collection index; move it away")
    try:
        connection = _connect(path, create=False)
    except apsw.Error as err:
        raise DocumentError(damaged(name, path, err)) from err
    try:
        return connection, _read_meta(connection, name, path)
    except BaseException as err:
        connection.close()
        if isinstance(err, apsw.Error):
            raise DocumentError(damaged(name, path, err)) from err
        raise


def damaged(name: str, path: Path, err: Exception) -> str:
    """What to tell a person whose index SQLite could not use."""
    if isinstance(err, apsw.NotADBError):
        return (
            f"{path} is not a SQLite database, so not the index of collection '{name}'; "
            f"move it away, or remove the collection with `owl docs rm {name}`"
        )
    if isinstance(err, apsw.CorruptError):
        return (
            f"the index of collection '{name}' ({path}) is damaged ({err}); rebuild it: "
            f"owl docs rm {name} && owl docs add …"
        )
    return f"the index of collection '{name}' ({path}) could not be used: {err}"


def _connect(path: Path, *, create: bool) -> apsw.Connection:
    # Writes nothing: an empty file given to open stays empty.
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    connection = apsw.Connection(str(path), flags=flags)
    try:
        connection.set_busy_timeout(BUSY_TIMEOUT_MS)
        connection.enable_load_extension(True)
        connection.load_extension(sqlite_vec.loadable_path())
        # No SQL may load a library of its own choosing, and no trigger or view in a file
        # someone else wrote may call into the virtual tables.
        connection.enable_load_extension(False)
        connection.execute("PRAGMA trusted_schema = OFF")
        # In WAL mode NORMAL loses nothing when a process is killed (only on power loss).
        connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def _read_meta(connection: apsw.Connection, name: str, path: Path) -> IndexMeta:
    not_an_index = DocumentError(
        f"{path} is not an owl document index; move it away, or remove the collection with "
        f"`owl docs rm {name}` and add its documents again"
    )
    try:
        rows = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    except apsw.SQLError:  # no meta table: some other SQLite database
        raise not_an_index from None
    if rows.get("format") != FORMAT:
        raise not_an_index
    try:
        meta = IndexMeta(
            schema_version=int(rows["schema_version"]),
            embedder=str(rows["embedder"]),
            dimensions=int(rows["dimensions"]),
            created=str(rows["created"]),
        )
    except (KeyError, ValueError):
        raise not_an_index from None
    if meta.schema_version > SCHEMA_VERSION:
        raise DocumentError(
            f"collection '{name}' was written by a newer owl (index schema "
            f"{meta.schema_version}; this owl reads {SCHEMA_VERSION}); upgrade owl"
        )
    return meta

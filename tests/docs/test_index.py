"""The collection index: a real SQLite file through apsw, with FTS5 and sqlite-vec loaded."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import apsw
import numpy as np
import pytest
import sqlite_vec

from owl.docs.index import Index, fts_query
from owl.docs.index_file import SCHEMA_VERSION
from owl.docs.types import Chunk
from owl.errors import CollectionNotFound, DocumentError

DIM = 16
EMBEDDER = "test-embedder"
PAGE = "Zebras graze at dawn. The river floods in spring. Owls hunt mice at night."


def page_chunks(text: str = PAGE, *, page: int | None = 1) -> list[Chunk]:
    """One chunk per sentence, with its true span in `text`."""
    chunks, start = [], 0
    for sentence in text.split(". "):
        start = text.index(sentence, start)
        end = start + len(sentence)
        chunks.append(Chunk(text=sentence, page=page, start=start, end=end, heading="Nature"))
        start = end
    return chunks


def vectors(rows: int, *, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)


def put(index: Index, path: str, chunks: list[Chunk], *, seed: int = 0) -> np.ndarray:
    made = vectors(len(chunks), seed=seed)
    index.put_file(path=path, sha256="a" * 64, size=123, chunks=chunks, vectors=made)
    return made


def assert_consistent(path: Path) -> None:
    """SQLite's own checks pass, and FTS5 and sqlite-vec hold exactly the chunks' rows."""
    raw = apsw.Connection(str(path))
    try:
        raw.enable_load_extension(True)
        raw.load_extension(sqlite_vec.loadable_path())
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # With rank 1, FTS5 also checks its index against the chunks it reads from.
        raw.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        chunk_ids = [row[0] for row in raw.execute("SELECT id FROM chunks ORDER BY id")]
        vector_ids = [row[0] for row in raw.execute("SELECT rowid FROM chunks_vec ORDER BY 1")]
        assert vector_ids == chunk_ids
    finally:
        raw.close()


@pytest.fixture
def index(tmp_path: Path):
    with Index.create(tmp_path / "notes.owlidx", embedder=EMBEDDER, dimensions=DIM) as made:
        yield made


def test_chunks_and_their_spans_come_back_as_stored(index: Index, tmp_path: Path) -> None:
    chunks = page_chunks()
    put(index, "a.txt", chunks)
    index.close()
    with Index.open(tmp_path / "notes.owlidx") as reopened:
        assert reopened.meta.embedder == EMBEDDER
        assert reopened.meta.dimensions == DIM
        assert reopened.meta.schema_version == SCHEMA_VERSION
        record = reopened.files()["a.txt"]
        assert (record.sha256, record.size, record.chunks) == ("a" * 64, 123, len(chunks))
        hits = [reopened.chunk(hit.chunk_id) for hit in reopened.bm25("zebras river owls", 10)]
    assert sorted((hit.start, hit.end, hit.text) for hit in hits) == [
        (c.start, c.end, c.text) for c in chunks
    ]
    for hit in hits:
        assert PAGE[hit.start : hit.end] == hit.text
        assert (hit.path, hit.page) == ("a.txt", 1)


def test_a_file_put_again_replaces_its_chunks_and_vectors(index: Index) -> None:
    old_vectors = put(index, "a.txt", page_chunks(), seed=1)
    old_ids = {hit.chunk_id for hit in index.bm25("zebras river owls", 10)}
    new = page_chunks("Comets cross the sky. Tides follow the moon.", page=None)
    new_vectors = put(index, "a.txt", new, seed=2)

    assert index.bm25("zebras", 5) == []
    assert [hit.text for hit in index.bm25("comets", 5)] == ["Comets cross the sky"]
    assert index.files()["a.txt"].chunks == 2
    assert index.stats()["chunks"] == 2
    nearest = index.nearest(old_vectors[0], 10)
    assert {hit.chunk_id for hit in nearest}.isdisjoint(old_ids)
    assert index.nearest(new_vectors[1], 1)[0].text == "Tides follow the moon."
    for chunk_id in old_ids:
        with pytest.raises(DocumentError, match="no chunk"):
            index.chunk(chunk_id)
    assert_consistent(index.path)


def test_removing_a_file_leaves_the_others(index: Index) -> None:
    put(index, "a.txt", page_chunks())
    kept = put(index, "b.txt", page_chunks("Owls nest in barns."), seed=3)

    assert index.remove_file("a.txt") is True
    assert index.remove_file("a.txt") is False
    assert list(index.files()) == ["b.txt"]
    assert {hit.path for hit in index.bm25("owls zebras", 10)} == {"b.txt"}
    assert [hit.path for hit in index.nearest(kept[0], 10)] == ["b.txt"]
    assert index.stats()["files"] == 1
    assert_consistent(index.path)


def test_bm25_ranks_the_chunk_with_the_term_first(index: Index) -> None:
    put(index, "a.txt", page_chunks())
    put(index, "b.txt", page_chunks("Mice hide from owls. Mice eat grain. Hawks circle."), seed=4)

    hits = index.bm25("zebra", 5)  # the stemmer meets "Zebras" halfway
    assert [hit.text for hit in hits] == ["Zebras graze at dawn"]
    assert hits[0].score > 0
    mice = index.bm25("mice", 5)
    assert len(mice) == 3
    assert all(a.score >= b.score for a, b in zip(mice, mice[1:], strict=False))


def test_nearest_finds_the_planted_vector(index: Index) -> None:
    text = "x " * 50
    chunks = [Chunk(text=text, page=1, start=0, end=len(text)) for _ in range(300)]
    stored = put(index, "many.txt", chunks, seed=5)
    planted = 123
    query = stored[planted] + 0.01 * np.random.default_rng(6).standard_normal(DIM)

    hits = index.nearest(query.astype(np.float32), 5)
    ids = sorted(hit.chunk_id for hit in index.bm25("x", 300))
    assert hits[0].chunk_id == ids[planted]
    cosine = stored[planted] @ query / (np.linalg.norm(stored[planted]) * np.linalg.norm(query))
    assert hits[0].score == pytest.approx(cosine, abs=1e-5)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'zebras"',
        "AND OR NOT",
        "*",
        "zebras*",
        "a:b",
        "text: zebras",
        "NEAR(zebras river, 3)",
        "(zebras",
        "^zebras - river + {owls}",
        "'; DROP TABLE chunks; --",
        "zebras\x00river",
        "zebras " * 2000,
        "ж" * 10_000,
        "".join(chr(c) for c in range(32, 10_032)),
    ],
)
def test_no_query_text_makes_bm25_fail(index: Index, query: str) -> None:
    put(index, "a.txt", page_chunks())
    hits = index.bm25(query, 5)
    assert isinstance(hits, list)
    if "zebras" in query:
        assert "Zebras graze at dawn" in [hit.text for hit in hits]
    assert index.stats()["chunks"] == 3  # and nothing was dropped


@pytest.mark.parametrize("query", ["", "   ", "*", '"', "?!- ()", "_"])
def test_a_query_without_words_finds_nothing(index: Index, query: str) -> None:
    put(index, "a.txt", page_chunks())
    assert index.bm25(query, 5) == []


def test_fts_query_quotes_each_word_once() -> None:
    assert fts_query('Zebras AND "river" NEAR(x) a:b zebras') == (
        '"zebras" OR "and" OR "river" OR "near" OR "x" OR "a" OR "b"'
    )
    assert fts_query("-*()") == ""
    assert fts_query(" ".join(f"w{i}" for i in range(500))).count(" OR ") == 63


def test_an_index_built_with_another_embedder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    Index.create(path, embedder=EMBEDDER, dimensions=DIM).close()
    with pytest.raises(
        DocumentError, match="was built with test-embedder .*rebuild it: owl docs rm"
    ):
        Index.open_or_create(path, embedder="other-embedder", dimensions=DIM)
    with pytest.raises(DocumentError, match=f"{DIM} dimensions"):
        Index.open_or_create(path, embedder=EMBEDDER, dimensions=DIM * 2)
    with Index.open_or_create(path, embedder=EMBEDDER, dimensions=DIM) as same:
        assert same.meta.embedder == EMBEDDER


def test_open_or_create_makes_a_missing_index(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fresh.owlidx"
    with Index.open_or_create(path, embedder=EMBEDDER, dimensions=DIM) as made:
        assert made.files() == {}
        assert made.name == "fresh"
    assert [p.name for p in path.parent.iterdir()] == ["fresh.owlidx"]  # no temporary left


def test_create_refuses_an_existing_file_and_open_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    Index.create(path, embedder=EMBEDDER, dimensions=DIM).close()
    with pytest.raises(DocumentError, match="already exists"):
        Index.create(path, embedder=EMBEDDER, dimensions=DIM)
    with pytest.raises(CollectionNotFound, match="no document collection 'gone'") as caught:
        Index.open(tmp_path / "gone.owlidx")
    assert isinstance(caught.value, LookupError)


@pytest.mark.parametrize("dimensions", [0, -3, 9000, 2.5, True])
def test_impossible_dimensions_are_refused(tmp_path: Path, dimensions: object) -> None:
    with pytest.raises(DocumentError, match="dimensions"):
        Index.create(tmp_path / "x.owlidx", embedder=EMBEDDER, dimensions=dimensions)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    path.write_bytes(b"%PDF-1.7 not a database at all\n" * 200)
    with pytest.raises(DocumentError, match="is not a SQLite database.*owl docs rm notes"):
        Index.open(path)


def test_an_empty_file_is_refused_and_left_empty(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    path.touch()
    with pytest.raises(DocumentError, match="not an owl document index"):
        Index.open(path)
    assert path.stat().st_size == 0


def test_a_sqlite_database_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    other = apsw.Connection(str(path))
    other.execute("CREATE TABLE meta (name TEXT); CREATE TABLE photos (id INTEGER)")
    other.close()
    with pytest.raises(DocumentError, match="not an owl document index"):
        Index.open(path)


def test_a_damaged_index_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    with Index.create(path, embedder=EMBEDDER, dimensions=DIM) as made:
        put(made, "a.txt", page_chunks())
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)  # keep the header, ruin the schema page
    path.write_bytes(bytes(data))
    with pytest.raises(DocumentError, match="is damaged.*rebuild it"):
        Index.open(path)


def test_an_index_from_a_newer_owl_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    Index.create(path, embedder=EMBEDDER, dimensions=DIM).close()
    raw = apsw.Connection(str(path))
    raw.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    raw.close()
    with pytest.raises(DocumentError, match="newer owl.*upgrade owl"):
        Index.open(path)


def test_a_failed_transaction_leaves_nothing(index: Index) -> None:
    put(index, "a.txt", page_chunks())
    with pytest.raises(RuntimeError, match="stop"), index.transaction():
        index.remove_file("a.txt")
        put(index, "b.txt", page_chunks())
        raise RuntimeError("stop")
    assert list(index.files()) == ["a.txt"]
    assert len(index.bm25("zebras river owls", 10)) == 3


def test_a_failed_inner_transaction_undoes_only_itself(index: Index) -> None:
    with index.transaction():
        put(index, "a.txt", page_chunks())
        with pytest.raises(RuntimeError), index.transaction():
            put(index, "b.txt", page_chunks())
            raise RuntimeError("only b")
        put(index, "c.txt", page_chunks())
    assert list(index.files()) == ["a.txt", "c.txt"]
    assert {hit.path for hit in index.bm25("zebras", 10)} == {"a.txt", "c.txt"}
    assert_consistent(index.path)


def test_vectors_that_do_not_fit_are_refused(index: Index) -> None:
    chunks = page_chunks()
    with pytest.raises(DocumentError, match="needs 3 vectors of 16 dimensions"):
        index.put_file(path="a", sha256="a" * 64, size=1, chunks=chunks, vectors=vectors(2))
    broken = vectors(3)
    broken[1, 2] = np.nan
    with pytest.raises(DocumentError, match="NaN"):
        index.put_file(path="a", sha256="a" * 64, size=1, chunks=chunks, vectors=broken)
    with pytest.raises(DocumentError, match="query vector has shape"):
        index.nearest([1.0, 2.0], 3)
    with pytest.raises(DocumentError, match="zero"):
        index.nearest(np.zeros(DIM), 3)
    assert index.files() == {}


def test_a_closed_index_says_so(index: Index) -> None:
    index.close()
    index.close()
    with pytest.raises(DocumentError, match="closed"):
        index.files()


KILLED_WRITER = """
import sys
import numpy as np
from owl.docs.index import Index
from owl.docs.types import Chunk

index = Index.open(sys.argv[1])
rows, dims = 4000, int(sys.argv[2])
text = "interrupted " * 20
chunks = [Chunk(text=text, page=1, start=0, end=len(text)) for _ in range(rows)]
made = np.random.default_rng(9).standard_normal((rows, dims)).astype(np.float32)
with index.transaction():
    # Replaces the committed file, then adds far more than SQLite's page cache holds, so
    # uncommitted pages spill into the WAL before the kill.
    index.put_file(path="a.txt", sha256="b" * 64, size=1, chunks=chunks[:5], vectors=made[:5])
    index.put_file(path="new.txt", sha256="c" * 64, size=2, chunks=chunks, vectors=made)
    print("written", flush=True)
    sys.stdin.readline()  # the test kills this process here, inside the transaction
"""


def test_a_writer_killed_mid_transaction_leaves_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "notes.owlidx"
    dims = 384
    with Index.create(path, embedder=EMBEDDER, dimensions=dims) as made:
        chunks = page_chunks()
        made.put_file(
            path="a.txt", sha256="a" * 64, size=123, chunks=chunks, vectors=np.ones((3, dims))
        )
        committed = made.files()

    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), str(dims)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = writer.stdout.readline()
        assert line == "written\n", writer.stderr.read()
        with Index.open(path) as reader:  # while the writer holds its transaction open
            assert reader.files() == committed
        writer.kill()
        writer.wait()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdin.close()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0  # the kill left uncommitted pages behind

    with Index.open(path) as after:
        assert after.files() == committed
        assert after.bm25("interrupted", 5) == []
        assert sorted(hit.text for hit in after.bm25("zebras river owls", 10)) == sorted(
            c.text for c in chunks
        )
        assert after.stats()["chunks"] == 3
        after.put_file(
            path="later.txt", sha256="d" * 64, size=4, chunks=chunks[:1], vectors=np.ones((1, dims))
        )
        assert set(after.files()) == {"a.txt", "later.txt"}
    assert_consistent(path)


def test_roots_are_remembered_once_in_the_order_added(index: Index, tmp_path: Path) -> None:
    index.add_roots(["/notes", "/papers/a.pdf"])
    index.add_roots(["/papers/a.pdf", "/more"])
    index.close()
    with Index.open(tmp_path / "notes.owlidx") as reopened:
        assert reopened.roots() == ["/notes", "/papers/a.pdf", "/more"]
        assert (reopened.embedder, reopened.dimensions) == (EMBEDDER, DIM)


def test_a_second_writer_is_refused_while_the_first_writes(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("owl.docs.index_file.BUSY_TIMEOUT_MS", 20)  # refuse soon, not in 10 s
    put(index, "a.txt", page_chunks())
    with Index.open(index.path) as other:
        with index.transaction():
            index.remove_file("a.txt")
            with pytest.raises(DocumentError, match="being written by another owl process"):
                put(other, "b.txt", page_chunks())
            assert list(other.files()) == ["a.txt"]  # it still reads the last commit
        put(other, "b.txt", page_chunks())  # the first writer is done: the second may write
    assert list(index.files()) == ["b.txt"]

"""owl.lock: models pinned to their bytes; drift at the source or in the store is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import LockMismatch, StoreCorrupted
from owl.pull import pull, pull_locked
from owl.store import Store
from owl.store.lock import Lock, check_locked, locked_model, read_lock, write_lock
from tests.support.fileserver import FileServer
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def _lock(tmp_path: Path, *manifests) -> Path:
    path = tmp_path / "owl.lock"
    write_lock(path, Lock(models={m.display_name: locked_model(m) for m in manifests}))
    return path


def test_a_lock_round_trips_and_matches_the_store(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)
    path = _lock(tmp_path, manifest)
    text = path.read_text()
    assert text.startswith("# owl.lock") and manifest.weights.digest in text
    lock = read_lock(path)
    assert lock.entry("tiny").digests() == {"tiny.gguf": manifest.weights.digest}
    check_locked(manifest, lock)  # matches: no error


def test_a_model_that_drifted_in_the_store_is_refused(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)
    lock = read_lock(_lock(tmp_path, manifest))
    store.remove(manifest.model_name)
    changed = pull(
        str(write_tiny_gguf(tmp_path / "tiny.gguf", rows=16)), store=store, settings=settings
    )
    with pytest.raises(LockMismatch, match="differs from owl.lock") as refused:
        check_locked(changed, lock)
    assert manifest.weights.digest in str(refused.value)
    with pytest.raises(LockMismatch, match="owl rm tiny"):
        pull_locked("tiny", lock=lock, store=store, settings=settings)
    with pytest.raises(LockMismatch, match="not in owl.lock; run `owl lock other`"):
        lock.entry("other")


def test_pull_locked_fetches_the_pinned_bytes_and_refuses_drift_at_the_source(
    store: Store, settings: Settings, tmp_path: Path, server: FileServer
) -> None:
    served = write_tiny_gguf(tmp_path / "served" / "model.gguf")
    server.add("/model.gguf", served)
    manifest = pull(server.url("/model.gguf"), store=store, settings=settings)
    lock = read_lock(_lock(tmp_path, manifest))

    store.remove(manifest.model_name)
    again = pull_locked("model", lock=lock, store=store, settings=settings)
    assert again.weights.digest == manifest.weights.digest

    store.remove(manifest.model_name)
    write_tiny_gguf(served, rows=8)  # the publisher changed the file behind the same URL
    with pytest.raises(LockMismatch, match="pins"):
        pull_locked("model", lock=lock, store=store, settings=settings)
    assert store.list() == [] and store.blobs.digests() == set()


def test_a_broken_or_missing_lock_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LockMismatch, match="owl lock MODEL"):
        read_lock(tmp_path / "owl.lock")
    broken = tmp_path / "broken.lock"
    broken.write_text("version = 1\n[models.x]\nformat = 'gguf'\n")
    with pytest.raises(StoreCorrupted, match="not a valid lock file"):
        read_lock(broken)
    garbage = tmp_path / "garbage.lock"
    garbage.write_text("[[[")
    with pytest.raises(StoreCorrupted, match="cannot be read"):
        read_lock(garbage)

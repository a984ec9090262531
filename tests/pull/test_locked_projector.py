"""owl.lock pins a vision model's projector with its model: `owl pull --locked` brings both
back from their sources, and a projector whose bytes changed at its source leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import LockMismatch
from owl.pull import pull_locked, pull_vision
from owl.store import Store
from owl.store.lock import Lock, locked_model, read_lock, write_lock
from tests.support.fileserver import FileServer
from tests.support.hub import assert_nothing_stored
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import write_tiny_mmproj


@pytest.fixture
def served(tmp_path: Path):
    files = tmp_path / "files"
    with FileServer() as server:
        server.add("/tiny.gguf", write_tiny_gguf(files / "tiny.gguf", license="apache-2.0"))
        server.add("/mmproj-tiny-f16.gguf", write_tiny_mmproj(files / "mmproj-tiny-f16.gguf"))
        yield server


def _pull_and_lock(served: FileServer, store: Store, settings: Settings, path: Path) -> Lock:
    manifest = pull_vision(
        served.url("/tiny.gguf"),
        projector=served.url("/mmproj-tiny-f16.gguf"),
        store=store,
        settings=settings,
    ).manifest
    write_lock(path, Lock(models={manifest.display_name: locked_model(manifest)}))
    store.remove(manifest.model_name)
    assert_nothing_stored(store)
    return read_lock(path)  # what a fresh checkout of the project reads


def test_pull_locked_brings_back_the_model_and_its_projector(
    served: FileServer, store: Store, settings: Settings, tmp_path: Path
) -> None:
    lock = _pull_and_lock(served, store, settings, tmp_path / "owl.lock")
    (name,) = lock.models
    assert lock.models[name].projector_source.uri == served.url("/mmproj-tiny-f16.gguf")

    manifest = pull_locked(name, lock=lock, store=store, settings=settings)

    assert {entry.filename: entry.digest for entry in manifest.files} == lock.entry(name).digests()
    projector = served.files["/mmproj-tiny-f16.gguf"].data_path
    assert store.projector_path(manifest).read_bytes() == projector.read_bytes()
    # Stored and matching: pulled again, nothing is fetched.
    before = len(served.requests)
    assert pull_locked(name, lock=lock, store=store, settings=settings) == manifest
    assert len(served.requests) == before


def test_a_projector_changed_at_its_source_leaves_nothing_stored(
    served: FileServer, store: Store, settings: Settings, tmp_path: Path
) -> None:
    lock = _pull_and_lock(served, store, settings, tmp_path / "owl.lock")
    (name,) = lock.models
    other = write_tiny_mmproj(tmp_path / "other" / "mmproj-tiny-f16.gguf", rows=2)
    served.add("/mmproj-tiny-f16.gguf", other)

    with pytest.raises(LockMismatch, match="now serves other bytes"):
        pull_locked(name, lock=lock, store=store, settings=settings)

    assert_nothing_stored(store)  # not the model without its pinned projector

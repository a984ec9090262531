"""A model owl derived has no source to download: pull says how to make it again."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import LockMismatch, ModelNotFound
from owl.pull import pull, pull_locked
from owl.quantize import quantize
from owl.store import Store
from owl.store.lock import Lock, locked_model


def test_a_lost_derived_blob_is_not_replaced_by_its_parent(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    parent = pull("smollm2", store=store, settings=settings)
    child = quantize(parent, store=store, settings=settings, qtype="Q4_0")
    lock = Lock(models={child.display_name: locked_model(child)})
    store.blobs.remove(child.weights.digest)

    with pytest.raises(ModelNotFound, match="derived by owl from 'smollm2'") as refused:
        pull(child.display_name, store=store, settings=settings)
    assert "owl quantize smollm2" in str(refused.value)
    with pytest.raises(LockMismatch, match="derived by owl"):
        pull_locked(child.display_name, lock=lock, store=store, settings=settings)
    # Neither pull put the parent's bytes under the child's name.
    assert store.get(child.model_name).weights.digest == child.weights.digest
    assert not store.blobs.has(child.weights.digest)

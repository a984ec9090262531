"""Local files and the embedded model: imported into the store, named, removed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import ModelFormatError, ModelNotFound, NameClash, SourceNotFound, StoreCorrupted
from owl.pull import pull, register_embedded, resolve
from owl.store import RefKind, Store, parse_name
from owl.store.aliases import aliases
from owl.store.blobs import sha256_file

pytestmark = pytest.mark.slow


def test_embedded_model_registers_without_network(store: Store, settings: Settings) -> None:
    registered = register_embedded(store, settings)
    assert sorted(manifest.name for manifest in registered) == sorted(
        str(a.name) for a in aliases().values() if a.offline
    )
    manifest = store.get(parse_name("smollm2"))
    assert manifest.source.kind is RefKind.PACKAGE
    assert manifest.license == "apache-2.0"
    assert manifest.parameters == {"temperature": 0.2, "top_p": 0.9}  # from aliases.toml
    assert manifest.info["architecture"] == "llama"
    assert manifest.info["quantization"] == "Q4_1"
    assert store.blobs.path(manifest.weights.digest).stat().st_size == manifest.size
    # Once registered, `owl rm` sticks: the next list does not bring it back.
    store.remove(parse_name("smollm2"))
    assert register_embedded(store, settings) == []
    assert "smollm2" not in [manifest.name for manifest in store.list()]
    # …but asking for it by name restores it, still offline.
    assert resolve("smollm2", store=store, settings=settings).display_name == "smollm2"


def test_pull_local_file(
    store: Store, settings: Settings, bundled_gguf: Path, tmp_path: Path
) -> None:
    local = tmp_path / "My-Model.gguf"
    shutil.copy(bundled_gguf, local)
    manifest = pull(f"./{os.path.relpath(local)}", store=store, settings=settings)
    assert manifest.display_name == "my-model"
    assert manifest.weights.digest == sha256_file(local)
    assert manifest.source.uri == str(local.resolve())
    # Pulling the same file again is the same model, not a clash.
    assert (
        pull(str(local), store=store, settings=settings).weights.digest == manifest.weights.digest
    )
    assert resolve(str(local), store=store, settings=settings).display_name == "my-model"


def test_name_clash_asks_for_a_name(
    store: Store, settings: Settings, bundled_gguf: Path, tmp_path: Path
) -> None:
    pull("smollm2", store=store, settings=settings)
    other = tmp_path / "smollm2.gguf"
    shutil.copy(bundled_gguf, other)
    with pytest.raises(NameClash, match="--name"):
        pull(str(other), store=store, settings=settings)
    renamed = pull(str(other), store=store, settings=settings, name="copy:v2")
    assert renamed.display_name == "copy:v2"
    # Two names, one blob: removing one keeps the blob the other needs.
    assert len(store.blobs.digests()) == 1
    store.remove(parse_name("copy:v2"))
    assert len(store.blobs.digests()) == 1
    store.remove(parse_name("smollm2"))
    assert store.blobs.digests() == set()


def test_bad_files_leave_nothing(
    store: Store, settings: Settings, bundled_gguf: Path, tmp_path: Path
) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ModelFormatError, match="not a model file"):
        pull(str(text), store=store, settings=settings)
    truncated = tmp_path / "truncated.gguf"
    with bundled_gguf.open("rb") as source:
        truncated.write_bytes(source.read(5_000_000))
    with pytest.raises(ModelFormatError, match="truncated"):
        pull(str(truncated), store=store, settings=settings)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    with pytest.raises(ModelFormatError, match="not a valid GGUF"):
        pull(str(header_only), store=store, settings=settings)
    with pytest.raises(SourceNotFound, match="no such file"):
        pull(str(tmp_path / "missing.gguf"), store=store, settings=settings)
    with pytest.raises(ModelFormatError, match="not a model folder owl knows"):
        pull(str(tmp_path) + "/", store=store, settings=settings)
    assert store.list() == []
    assert store.blobs.digests() == set()


def test_unknown_names_say_what_to_do(store: Store, settings: Settings) -> None:
    with pytest.raises(ModelNotFound, match="owl pull"):
        pull("no-such-model", store=store, settings=settings)
    pull("smollm2", store=store, settings=settings)
    with pytest.raises(ModelNotFound, match="Did you mean: smollm2"):
        resolve("smollm", store=store, settings=settings)


def test_lost_blob_is_reported_then_restored(store: Store, settings: Settings) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    store.blobs.remove(manifest.weights.digest)
    with pytest.raises(StoreCorrupted, match="pull the model again"):
        store.weights_path(manifest)
    restored = pull("smollm2", store=store, settings=settings)
    assert store.weights_path(restored).is_file()


def test_a_damaged_manifest_hides_nothing_else(
    store: Store, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    pull("smollm2", store=store, settings=settings)
    damaged = store.manifest_dir / "broken" / "latest.json"
    damaged.parent.mkdir()
    damaged.write_text("{not json")
    assert [manifest.display_name for manifest in store.list()] == ["smollm2"]
    assert "delete it and pull the model again" in caplog.text
    with pytest.raises(StoreCorrupted, match="unreadable"):
        store.get(parse_name("broken"))
